// Part 6, slow and broken clients:
// - slowloris: many connections send a request head one header byte at a time while a normal
//   client keeps working (GET /health, a restic upload and its read-back): every normal request
//   must succeed; its worst latency is reported, and the server, started with a header-read
//   timeout shorter than the run, must have closed every slow connection by itself;
// - stalled downloads: clients GET a large object (restic and borg) and stop reading after 64
//   KiB; the server's resident memory (VmRSS) must not grow with the object (backpressure);
// - disconnects mid-upload: restic objects, restic configs, borg items, fixed-length and chunked,
//   cut off at a random point by closing the socket; afterwards no temp file, no object and no
//   config may remain, and the reported quota usage must still equal the disk.

import { randomBytes } from "../../tests/_server.ts";
import {
  below,
  BORG,
  bySize,
  copyBytes,
  fdCount,
  type Figure,
  INFO,
  measureDisk,
  metricsQuotaUsage,
  ONE,
  type PartContext,
  precreateLayout,
  Rng,
  sha256Hex,
  sleep,
  startServe,
  tryRequest,
  vmRssKiB,
  ZERO,
} from "./common.ts";

const enc = new TextEncoder();

async function writeAll(
  conn: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
}

async function slowloris(ctx: PartContext, figures: Figure[]): Promise<void> {
  const sizes = bySize(ctx.scale, {
    test: { connections: 50, seconds: 3, headerTimeout: "1s" },
    reduced: { connections: 200, seconds: 6, headerTimeout: "2s" },
    full: { connections: 500, seconds: 30, headerTimeout: "10s" },
  });
  const data = `${ctx.tmp}/slowloris`;
  await precreateLayout(data, { restic: ["r"] });
  const server = await startServe([
    "--path",
    data,
    "--no-auth",
    "--read-header-timeout",
    sizes.headerTimeout,
  ]);
  const fdsBefore = fdCount(server.pid) ?? 0;
  const conns: Deno.Conn[] = [];
  let closedByServer = 0;
  let stop = false;
  try {
    for (let i = 0; i < sizes.connections; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await writeAll(conn, enc.encode(`POST /r/data/${"0".repeat(64)} HTTP/1.1\r\nHost: x\r\nX-`));
      conns.push(conn);
    }
    // every slow connection: one more header byte now and then; note when the server hangs up
    const dribblers = conns.map(async (conn, i) => {
      await sleep((i * 37) % 400);
      const watcher = conn.read(new Uint8Array(1024)).then(
        (n) => n === null || n > 0,
        () => true,
      );
      let closed = false;
      watcher.then((c) => closed = c);
      while (!stop && !closed) {
        try {
          await writeAll(conn, enc.encode("a"));
        } catch {
          closed = true;
          break;
        }
        await sleep(400);
      }
      if (closed) closedByServer++;
    });
    const latencies: number[] = [];
    let ok = true;
    const deadline = Date.now() + sizes.seconds * 1000;
    const client = Deno.createHttpClient({});
    let round = 0;
    while (Date.now() < deadline) {
      const body = enc.encode(`normal client ${round++}`);
      const id = sha256Hex(body);
      const started = performance.now();
      const health = await tryRequest(`${server.url}/health`, { client });
      const put = await tryRequest(`${server.url}/r/data/${id}`, {
        method: "POST",
        body: copyBytes(body),
        client,
      });
      const back = await tryRequest(`${server.url}/r/data/${id}`, { client });
      latencies.push(performance.now() - started);
      if (health.status !== 200 || put.status !== 200 || back.status !== 200) ok = false;
      await sleep(200);
    }
    client.close();
    const fdsDuring = fdCount(server.pid) ?? 0;
    stop = true;
    await Promise.all(dribblers);
    ctx.log(
      `slow: ${sizes.connections} slowloris connections for ${sizes.seconds} s: server closed ` +
        `${closedByServer}; server fds ${fdsBefore} → ${fdsDuring}; ${latencies.length} normal ` +
        `rounds, median ${median(latencies).toFixed(1)} ms`,
    );
    figures.push(
      { name: "slow.normal_client_ok", value: ok && latencies.length > 0 ? 1 : 0, rule: ONE },
      { name: "slow.normal_client_ms", value: Math.round(Math.max(...latencies)), rule: INFO },
      { name: "slow.slowloris_connections", value: sizes.connections, rule: INFO },
      { name: "slow.slowloris_closed_by_server", value: closedByServer, rule: INFO },
      {
        name: "slow.slowloris_left_open",
        value: sizes.connections - closedByServer,
        rule: ZERO,
      },
    );
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await server.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)];
}

async function stalledDownloads(ctx: PartContext, figures: Figure[]): Promise<void> {
  const mib = bySize(ctx.scale, { test: 64, reduced: 200, full: 500 });
  const stallSeconds = bySize(ctx.scale, { test: 2, reduced: 5, full: 15 });
  const data = `${ctx.tmp}/stalled`;
  await precreateLayout(data, { restic: ["r"], borg: ["b"] });
  // one big object, written straight to disk (restic GET does not verify) and hard-linked into
  // the borg store
  const file = await Deno.open(`${data}/big`, { write: true, create: true });
  const chunk = randomBytes(4 * 1024 * 1024);
  for (let i = 0; i < mib / 4; i++) await writeAll(file, chunk);
  file.close();
  const id = "ab" + "0".repeat(62);
  await Deno.rename(`${data}/big`, `${data}/r/data/ab/${id}`);
  await Deno.link(`${data}/r/data/ab/${id}`, `${data}/b/packs/ab/${id}`);
  const server = await startServe(["--path", data, "--no-auth"]);
  const conns: Deno.Conn[] = [];
  try {
    // warm up the paths once with small reads
    await tryRequest(`${server.url}/r/data/${id}`, { headers: { range: "bytes=0-9" } });
    await tryRequest(`${server.url}/b/packs/ab/${id}`, {
      headers: { accept: BORG, range: "bytes=0-9" },
    });
    await sleep(300);
    const before = vmRssKiB(server.pid) ?? 0;
    for (
      const target of [`/r/data/${id}`, `/r/data/${id}`, `/b/packs/ab/${id}`, `/b/packs/ab/${id}`]
    ) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const accept = target.startsWith("/b/") ? `Accept: ${BORG}\r\n` : "";
      await writeAll(conn, enc.encode(`GET ${target} HTTP/1.1\r\nHost: x\r\n${accept}\r\n`));
      let got = 0;
      const buffer = new Uint8Array(16 * 1024);
      while (got < 64 * 1024) {
        const n = await conn.read(buffer);
        if (n === null) break;
        got += n;
      }
      conns.push(conn); // and never read again
    }
    let peak = before;
    const until = Date.now() + stallSeconds * 1000;
    while (Date.now() < until) {
      peak = Math.max(peak, vmRssKiB(server.pid) ?? 0);
      await sleep(200);
    }
    const growth = (peak - before) / 1024;
    for (const conn of conns) conn.close();
    conns.length = 0;
    await sleep(200);
    const health = await tryRequest(`${server.url}/health`);
    ctx.log(
      `slow: 4 downloads of ${mib} MiB stalled ${stallSeconds} s: VmRSS ${before} → peak ` +
        `${peak} KiB; /health afterwards ${health.status}`,
    );
    figures.push(
      { name: "slow.stalled_download_mib", value: mib, rule: INFO },
      { name: "slow.stalled_download_rss_growth_mib", value: Math.round(growth), rule: below(50) },
    );
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await server.stop();
  }
}

async function disconnects(ctx: PartContext, figures: Figure[]): Promise<void> {
  const count = bySize(ctx.scale, { test: 12, reduced: 30, full: 120 });
  const rng = new Rng(ctx.seed).fork(606);
  const data = `${ctx.tmp}/disconnect`;
  await precreateLayout(data, { restic: ["r"], borg: ["b"] });
  await Deno.writeTextFile(`${data}/r/config`, "config");
  for (let i = 0; i < count; i++) await Deno.mkdir(`${data}/c${i}/keys`, { recursive: true });
  const dirBytesAtStart = (await measureDisk(data)).dirBytes;
  const server = await startServe([
    "--path",
    data,
    "--no-auth",
    "--max-size",
    String(10 ** 12),
    "--prometheus",
  ]);
  const ids: string[] = [];
  let leftovers = 0;
  try {
    await Promise.all(Array.from({ length: count }, async (_, i) => {
      const size = rng.int(1000, 2 * 1024 * 1024);
      const body = randomBytes(size);
      const id = sha256Hex(body);
      ids.push(id);
      const kind = i % 4;
      const chunked = rng.chance(0.3);
      const target = kind === 0
        ? `/r/data/${id}`
        : kind === 1
        ? `/c${i}/config`
        : kind === 2
        ? `/b/packs/${id.slice(0, 2)}/${id}`
        : `/r/keys/${id}`;
      const headers = [`Host: x`];
      if (kind === 2) headers.push(`Accept: ${BORG}`, `X-Content-hash-sha256: ${id}`);
      headers.push(chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${size}`);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      try {
        await writeAll(
          conn,
          enc.encode(`POST ${target} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n`),
        );
        const cut = rng.int(0, size - 1);
        if (chunked) {
          await writeAll(conn, enc.encode(`${size.toString(16)}\r\n`));
        }
        for (let at = 0; at < cut; at += 65536) {
          await writeAll(conn, body.subarray(at, Math.min(cut, at + 65536)));
        }
        await sleep(rng.int(0, 50));
      } catch {
        /* the server may have answered and closed already */
      } finally {
        conn.close();
      }
    }));
    // wait for the server to notice and clean up (bounded)
    let disk = await measureDisk(data);
    for (let i = 0; i < 50 && disk.temps.length > 0; i++) {
      await sleep(100);
      disk = await measureDisk(data);
    }
    leftovers += disk.temps.length;
    if (disk.temps.length > 0) ctx.log(`slow: temp files left: ${disk.temps.slice(0, 5)}`);
    for (let i = 0; i < count; i++) {
      const id = ids[i];
      for (
        const path of [
          `r/data/${id.slice(0, 2)}/${id}`,
          `r/keys/${id}`,
          `b/packs/${id.slice(0, 2)}/${id}`,
          `c${i}/config`,
        ]
      ) {
        try {
          await Deno.lstat(`${data}/${path}`);
          leftovers++;
          ctx.log(`slow: ${path} exists after a cut upload`);
        } catch { /* absent: good */ }
      }
    }
    const expected = disk.usage - disk.dirBytes + dirBytesAtStart;
    const reported = await metricsQuotaUsage(server.url);
    if (reported !== expected) {
      leftovers++;
      ctx.log(`slow: reported usage ${reported} ≠ disk ${expected} after the disconnects`);
    }
    figures.push(
      { name: "slow.disconnected_uploads", value: count, rule: INFO },
      { name: "slow.disconnect_leftovers", value: leftovers, rule: ZERO },
    );
  } finally {
    await server.stop();
  }
}

export async function slowClients(ctx: PartContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  await slowloris(ctx, figures);
  await stalledDownloads(ctx, figures);
  await disconnects(ctx, figures);
  return figures;
}
