// `deno run --allow-all scripts/bench_s3.ts [--count N] [--size MIB] [--concurrency C]`:
// upload and download throughput of restic-sized objects straight to an S3 store (the
// S3Provider alone) and through stowage (restic REST over loopback HTTP into the same
// provider, SHA-256 verified), printed as one Markdown table on stdout (progress on stderr).
// The store comes from S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY; without S3_ENDPOINT a throw-away Ceph RGW is started with
// scripts/ceph-rgw.sh (radosgw must be installed) and stopped at the end. Objects are written
// below a fresh prefix that is removed afterwards; every object read back is checked.

import { createHash } from "node:crypto";
import { createHandler } from "../mod.ts";
import { S3Provider } from "../src/storage/s3.ts";

const SCRIPT = new URL("./ceph-rgw.sh", import.meta.url).pathname;
const MiB = 1024 * 1024;

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(Deno.args[i + 1]);
  if (!Number.isSafeInteger(value) || value <= 0) {
    console.error(`--${name} needs a positive integer`);
    Deno.exit(2);
  }
  return value;
}

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(
    "usage: scripts/bench_s3.ts [--count N (16)] [--size MIB (16)] [--concurrency C (4)]",
  );
  Deno.exit(0);
}
const count = option("count", 16);
const size = option("size", 16) * MiB;
const concurrency = option("concurrency", 4);
const log = (line: string) => console.error(`[bench_s3] ${line}`);

async function script(args: string[], env: Record<string, string> = {}): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [SCRIPT, ...args],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) throw new Error(`ceph-rgw.sh ${args[0]} failed`);
  return new TextDecoder().decode(out.stdout);
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Runs `task(i)` for i in [0, n) with `concurrency` workers; returns MB/s for `bytes`. */
async function timed(bytes: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await task(next++);
  }));
  return bytes / 1e6 / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  let env: Record<string, string> = Deno.env.toObject();
  let clusterDir: string | null = null;
  if (!env.S3_ENDPOINT) {
    clusterDir = await Deno.makeTempDir({ prefix: "stowage-bench-ceph-" });
    log(`no S3_ENDPOINT: starting a throw-away Ceph RGW in ${clusterDir}`);
    const lines = await script(["start", clusterDir], { WATCH_PID: String(Deno.pid) });
    env = { ...env };
    for (const line of lines.split("\n")) {
      const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (match) env[match[1]] = match[2];
    }
  }
  const provider = new S3Provider({
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION ?? "us-east-1",
    bucket: env.S3_BUCKET,
    prefix: `bench-${crypto.randomUUID()}`,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    },
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler({ provider, log: () => {} }),
  );
  const base = `http://127.0.0.1:${server.addr.port}/bench`;
  try {
    await provider.check();
    log(`${count} objects of ${size / MiB} MiB, ${concurrency} at a time, ${provider.description}`);
    const objects = Array.from({ length: count }, () => {
      const data = new Uint8Array(size);
      for (let at = 0; at < size; at += 65536) {
        crypto.getRandomValues(data.subarray(at, Math.min(size, at + 65536)));
      }
      return { data, id: sha256(data) };
    });
    const total = count * size;

    const directUp = await timed(total, async (i) => {
      const upload = await provider.begin(`direct/${objects[i].id}`, { sizeHint: size });
      const writer = upload.writable.getWriter();
      await writer.write(objects[i].data);
      await writer.close();
      await upload.commit({ replace: false });
    });
    log(`direct upload ${directUp.toFixed(1)} MB/s`);
    const directDown = await timed(total, async (i) => {
      const stream = await provider.read(`direct/${objects[i].id}`);
      const hash = createHash("sha256");
      for await (const chunk of stream) hash.update(chunk);
      if (hash.digest("hex") !== objects[i].id) throw new Error("direct read mismatch");
    });
    log(`direct download ${directDown.toFixed(1)} MB/s`);

    const created = await fetch(`${base}/?create=true`, { method: "POST" });
    await created.body?.cancel();
    if (created.status !== 200) throw new Error(`create: ${created.status}`);
    const viaUp = await timed(total, async (i) => {
      const response = await fetch(`${base}/data/${objects[i].id}`, {
        method: "POST",
        body: objects[i].data,
      });
      await response.body?.cancel();
      if (response.status !== 200) throw new Error(`upload: ${response.status}`);
    });
    log(`stowage upload ${viaUp.toFixed(1)} MB/s`);
    const viaDown = await timed(total, async (i) => {
      const response = await fetch(`${base}/data/${objects[i].id}`);
      const hash = createHash("sha256");
      for await (const chunk of response.body!) hash.update(chunk);
      if (hash.digest("hex") !== objects[i].id) throw new Error("stowage read mismatch");
    });
    log(`stowage download ${viaDown.toFixed(1)} MB/s`);

    const row = (what: string, direct: number, via: number) =>
      `| ${what} ${count} × ${size / MiB} MiB | ${direct.toFixed(1)} | ${via.toFixed(1)} | ${
        (via / direct).toFixed(2)
      } |`;
    console.log("| S3 workload | direct to the store (MB/s) | through stowage (MB/s) | ratio |");
    console.log("| --- | ---: | ---: | ---: |");
    console.log(row("upload", directUp, viaUp));
    console.log(row("download", directDown, viaDown));
  } finally {
    await server.shutdown();
    await provider.removeTree("").catch((error) => log(`cleanup failed: ${error}`));
    if (clusterDir !== null) await script(["stop", clusterDir]).catch(() => {});
  }
}

await main();
