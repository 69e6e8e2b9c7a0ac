// Part 7, soak: mixed restic and borgstore traffic for a fixed time (reduced 45 s, --full 600 s)
// from five workers on keep-alive connections: uploads (1 KiB–256 KiB), full and ranged reads
// checked byte for byte, HEAD sizes, listings, deletes, borg soft-delete moves and back, hashes.
// Every answer must be the expected one (soak.errors counts the others). After a warm-up (a fifth
// of the time, at least 15 s: V8 grows its heap in steps at first) the server's VmRSS is sampled twice a second: the growth from the
// mean of the first three samples to the mean of the last three must stay below 10 %. Open file
// descriptors (/proc/<pid>/fd) are counted with the server idle before the traffic and again
// after the client closed its connections: soak.fd_leak is the increase beyond a slack of 3.

import { randomBytes } from "../../tests/_server.ts";
import {
  below,
  BORG,
  bySize,
  copyBytes,
  fdCount,
  type Figure,
  INFO,
  type PartContext,
  precreateLayout,
  RESTIC_V2,
  Rng,
  sha256Hex,
  sleep,
  startServe,
  tryRequest,
  vmRssKiB,
  ZERO,
} from "./common.ts";

const FD_SLACK = 3;

interface Obj {
  id: string;
  body: Uint8Array;
}

interface Counters {
  requests: number;
  errors: number;
  details: string[];
}

function fail(counters: Counters, line: string): void {
  counters.errors++;
  if (counters.details.length < 30) counters.details.push(line);
}

async function worker(
  kind: "restic" | "borg",
  url: string,
  client: Deno.HttpClient,
  rng: Rng,
  deadline: number,
  counters: Counters,
): Promise<void> {
  const objects: Obj[] = [];
  const path = (id: string) =>
    kind === "restic" ? `/r/data/${id}` : `/b/packs/${id.slice(0, 2)}/${id}`;
  const base: Record<string, string> = kind === "borg" ? { accept: BORG } : {};
  const call = async (p: string, init: RequestInit = {}) => {
    counters.requests++;
    return await tryRequest(url + p, {
      ...init,
      client,
      headers: { ...base, ...(init.headers as Record<string, string> | undefined) },
    } as RequestInit);
  };
  while (Date.now() < deadline) {
    const r = rng.next();
    const pick = () => objects[rng.int(0, objects.length - 1)];
    if (objects.length === 0 || r < 0.35 && objects.length < 300) {
      const body = randomBytes(rng.int(1024, 256 * 1024));
      const id = sha256Hex(body);
      const headers: Record<string, string> = kind === "borg"
        ? { "x-content-hash-sha256": id }
        : {};
      const reply = await call(path(id), { method: "POST", body: copyBytes(body), headers });
      if (reply.status !== 200) fail(counters, `POST ${path(id)} → ${reply.status}`);
      else objects.push({ id, body });
    } else if (r < 0.55) {
      const obj = pick();
      const reply = await call(path(obj.id));
      if (reply.status !== 200 || sha256Hex(reply.body) !== obj.id) {
        fail(counters, `GET ${path(obj.id)} → ${reply.status}`);
      }
    } else if (r < 0.65) {
      const obj = pick();
      const start = rng.int(0, obj.body.byteLength - 1);
      const end = rng.int(start, obj.body.byteLength - 1);
      const reply = await call(path(obj.id), { headers: { range: `bytes=${start}-${end}` } });
      const want = obj.body.subarray(start, end + 1);
      if (reply.status !== 206 || sha256Hex(reply.body) !== sha256Hex(want)) {
        fail(counters, `GET ${path(obj.id)} bytes=${start}-${end} → ${reply.status}`);
      }
    } else if (r < 0.73) {
      const obj = pick();
      const reply = await call(path(obj.id), { method: "HEAD" });
      if (
        reply.status !== 200 || reply.headers.get("content-length") !== String(obj.body.byteLength)
      ) {
        fail(counters, `HEAD ${path(obj.id)} → ${reply.status}`);
      }
    } else if (r < 0.78) {
      const listPath = kind === "restic" ? "/r/keys/" : `/b/packs/${pick().id.slice(0, 2)}/`;
      const reply = await call(listPath, {
        headers: kind === "restic" ? { accept: RESTIC_V2 } : {},
      });
      if (reply.status !== 200) fail(counters, `GET ${listPath} → ${reply.status}`);
    } else if (r < 0.9) {
      const obj = objects.splice(rng.int(0, objects.length - 1), 1)[0];
      const reply = await call(path(obj.id), { method: "DELETE" });
      if (reply.status !== 200) fail(counters, `DELETE ${path(obj.id)} → ${reply.status}`);
    } else if (kind === "borg" && r < 0.95) {
      const obj = pick();
      const name = path(obj.id).slice("/b/".length);
      const away = await call(`/b/?cmd=move&current=${name}&new=${name}.del`, { method: "POST" });
      const back = await call(`/b/?cmd=move&current=${name}.del&new=${name}`, { method: "POST" });
      if (away.status !== 200 || back.status !== 200) {
        fail(counters, `soft delete and back ${name} → ${away.status}, ${back.status}`);
      }
    } else if (kind === "borg") {
      const obj = pick();
      const reply = await call(`${path(obj.id)}?cmd=hash&algorithm=sha256`, { method: "POST" });
      if (reply.status !== 200 || new TextDecoder().decode(reply.body) !== obj.id) {
        fail(counters, `hash ${path(obj.id)} → ${reply.status}`);
      }
    } else {
      const reply = await call("/r/config");
      if (reply.status !== 200) fail(counters, `GET /r/config → ${reply.status}`);
    }
  }
}

export async function soak(ctx: PartContext): Promise<Figure[]> {
  const seconds = ctx.soakSeconds ?? bySize(ctx.scale, { test: 8, reduced: 45, full: 600 });
  // V8 sizes its heap during the first seconds (a step around 13 s was observed): measure after
  const warmup = seconds >= 30 ? Math.max(15, seconds / 5) : seconds / 2;
  const data = `${ctx.tmp}/soak`;
  await precreateLayout(data, { restic: ["r"], borg: ["b"] });
  await Deno.writeTextFile(`${data}/r/config`, "soak config");
  const server = await startServe([
    "--path",
    data,
    "--no-auth",
    "--max-size",
    String(10 ** 12),
    "--prometheus",
  ]);
  const counters: Counters = { requests: 0, errors: 0, details: [] };
  try {
    await sleep(300);
    const fdsBefore = fdCount(server.pid) ?? 0;
    const client = Deno.createHttpClient({});
    const rng = new Rng(ctx.seed).fork(707);
    const start = Date.now();
    const deadline = start + seconds * 1000;
    const kinds = ["restic", "restic", "borg", "borg", "borg"] as const;
    const workers = kinds.map((kind, i) =>
      worker(kind, server.url, client, rng.fork(i), deadline, counters)
    );
    const samples: number[] = [];
    while (Date.now() < deadline) {
      await sleep(500);
      if (Date.now() - start >= warmup * 1000) samples.push(vmRssKiB(server.pid) ?? 0);
      if (samples.length > 0 && samples.length % 20 === 0) {
        ctx.log(`soak: ${Math.round((Date.now() - start) / 1000)} s, VmRSS ${samples.at(-1)} KiB`);
      }
    }
    await Promise.all(workers);
    client.close();
    await sleep(500);
    const fdsAfter = fdCount(server.pid) ?? 0;
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const first = mean(samples.slice(0, 3));
    const last = mean(samples.slice(-3));
    const growth = first > 0 ? ((last - first) / first) * 100 : 0;
    for (const line of counters.details) ctx.log(`soak: ${line}`);
    ctx.log(
      `soak: ${seconds} s, VmRSS after warm-up ${Math.round(first)} KiB → ${
        Math.round(last)
      } KiB; ` +
        `fds ${fdsBefore} → ${fdsAfter}`,
    );
    return [
      { name: "soak.seconds", value: seconds, rule: INFO },
      { name: "soak.requests", value: counters.requests, rule: INFO },
      { name: "soak.errors", value: counters.errors, rule: ZERO },
      { name: "soak.rss_growth_percent", value: Math.round(growth * 10) / 10, rule: below(10) },
      { name: "soak.fd_leak", value: Math.max(0, fdsAfter - fdsBefore - FD_SLACK), rule: ZERO },
    ];
  } finally {
    await server.stop();
  }
}
