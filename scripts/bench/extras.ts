// The bench's single-shot measurements: one large streamed upload (throughput and the server's
// peak RSS, read back and checked afterwards), `restic backup` of a generated tree (wall time),
// and startup-to-first-response: over TCP (spawn, poll until the server answers) and over stdio
// (spawn `borgstore-server-rest --stdio` as an ssh forced command would, one request on stdin, the
// first bytes of the answer); medians of N.

import { createHash } from "node:crypto";
import { formatBytes } from "./config.ts";
import { log, measure, MiB, type Session } from "./context.ts";
import { BenchFailure, expectStatus, requestOnce } from "./http.ts";
import { type StreamedObject, treeBytes, type TreeSpec, writeTree } from "./payload.ts";
import type { Results } from "./report.ts";
import { createRepo } from "./restic.ts";
import { pageBytes } from "./warm.ts";
import {
  freePort,
  PROJECT_ROOT,
  type ServerKind,
  spawnServer,
  stopChild,
  stowageStdioArgs,
} from "./servers.ts";

/** One streamed upload of `sizes.bigSize` bytes with Content-Length, then a checked read-back. */
export async function bigUpload(session: Session): Promise<void> {
  const { server, data } = session;
  const big = data.big;
  await createRepo(server.port, "/bench-big");
  const path = `/bench-big/data/${big.id}`;
  const label = `upload 1 × ${formatBytes(big.size)} (one stream)`;
  const usage = await measure(session, "upload-1g", label, "MiB/s", async () => {
    const started = performance.now();
    await uploadBig(server.port, path, big);
    return big.size / MiB / ((performance.now() - started) / 1000);
  }, pageBytes(1, big.size));
  session.results.add(server.kind, `  upload-1g: peak RSS`, "MiB", usage.peakRssMiB);
  await verifyBig(server.port, path, big);
}

/**
 * `streams` concurrent streamed uploads of the big object, one repository each: aggregate MiB/s
 * and the server's peak RSS; every copy is read back and checked.
 */
export async function bigUploadsConcurrent(session: Session, streams: number): Promise<void> {
  const { server, data } = session;
  const paths: string[] = [];
  for (let i = 0; i < streams; i++) {
    await createRepo(server.port, `/bench-big-${i}`);
    paths.push(`/bench-big-${i}/data/${data.big.id}`);
  }
  const copies = paths.map(() => data.big.copy());
  const total = streams * data.big.size;
  const label = `upload ${streams} × ${formatBytes(data.big.size)} at once, c${streams}`;
  const usage = await measure(session, "upload-1g-c16", label, "MiB/s", async () => {
    const started = performance.now();
    await Promise.all(paths.map((path, i) => uploadBig(server.port, path, copies[i])));
    return total / MiB / ((performance.now() - started) / 1000);
  }, pageBytes(streams, data.big.size));
  session.results.add(server.kind, `  upload-1g-c16: peak RSS`, "MiB", usage.peakRssMiB);
  for (const path of paths) await verifyBig(server.port, path, data.big);
}

async function uploadBig(port: number, path: string, big: StreamedObject): Promise<void> {
  const answer = await requestOnce(port, path, {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream" },
    body: { length: big.size, chunks: big.chunks() },
  });
  expectStatus(answer, [200, 201], `upload ${path}`);
}

/** Reads `path` back and compares its size and SHA-256 with `big`. */
async function verifyBig(port: number, path: string, big: StreamedObject): Promise<void> {
  const hash = createHash("sha256");
  const answer = await requestOnce(port, path, { sink: (chunk) => hash.update(chunk) });
  expectStatus(answer, [200], `verify GET ${path}`);
  const size = answer.length;
  const digest = hash.digest("hex");
  if (size !== big.size || digest !== big.id) {
    throw new BenchFailure(
      `VERIFY FAILED: ${path}: got ${size} B sha256 ${digest}, want ${big.size} B`,
    );
  }
}

/** Generates the backup source tree once per bench invocation. */
export async function prepareTree(dir: string, spec: TreeSpec): Promise<void> {
  const started = performance.now();
  await writeTree(dir, spec);
  log(
    `generated ${formatBytes(treeBytes(spec))} tree for restic backup in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}

async function restic(args: string[], env: Record<string, string>): Promise<void> {
  const out = await new Deno.Command("restic", {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-10).join("\n");
    throw new BenchFailure(`restic ${args[0]} failed (code ${out.code}):\n${text}`);
  }
}

export async function resticAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("restic", { args: ["version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** `restic init` (untimed), then a timed `restic backup` of `treeDir`; wall time in s. */
export async function resticBackup(
  session: Session,
  treeDir: string,
  cacheDir: string,
): Promise<void> {
  const { server, options } = session;
  const env = {
    RESTIC_REPOSITORY: `rest:${server.base}/backup/`,
    RESTIC_PASSWORD: "bench",
    RESTIC_CACHE_DIR: cacheDir,
  };
  await restic(["init"], env);
  const label = `restic backup of ${formatBytes(treeBytes(options.sizes.tree))} tree (wall)`;
  const usage = await measure(session, "restic-backup", label, "s", async () => {
    const started = performance.now();
    await restic(["backup", "--host", "bench", treeDir], env);
    return (performance.now() - started) / 1000;
  }, treeBytes(options.sizes.tree));
  session.results.add(server.kind, `  restic-backup: peak RSS`, "MiB", usage.peakRssMiB);
}

/** Spawn → first answer (stowage: GET /health 200; reference: any HTTP answer), in ms. */
async function startupOnce(kind: ServerKind, dataDir: string): Promise<number> {
  const port = freePort();
  const started = performance.now();
  const child = spawnServer(kind, dataDir, `127.0.0.1:${port}`);
  child.stderr.pipeTo(new WritableStream()).catch(() => {});
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  try {
    const path = kind === "stowage" ? "/health" : "/";
    while (performance.now() - started < 30_000) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}${path}`, { client });
        await response.body?.cancel();
        if (kind !== "stowage" || response.status === 200) {
          return performance.now() - started;
        }
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new BenchFailure(`${kind} did not answer within 30 s of spawning`);
  } finally {
    client.close();
    await stopChild(child);
  }
}

/** The request a borg client sends first, as one HTTP/1.1 request on stdin. */
const STDIO_REQUEST = new TextEncoder().encode(
  "HEAD /config HTTP/1.1\r\nHost: stdio\r\nAccept: application/vnd.x.borgstore.rest.v1\r\n\r\n",
);

/**
 * Spawn `stowage borgstore-server-rest --stdio` (what an ssh forced command starts per
 * connection) → the first bytes of its answer to one request on stdin, in ms.
 */
async function stdioStartupOnce(dataDir: string): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: stowageStdioArgs(dataDir),
    cwd: PROJECT_ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  let elapsed: number;
  let head: string;
  try {
    await writer.write(STDIO_REQUEST);
    const first = await reader.read();
    elapsed = performance.now() - started;
    head = new TextDecoder().decode(first.value ?? new Uint8Array()).split("\r\n")[0];
  } finally {
    await writer.close().catch(() => {});
    await reader.cancel().catch(() => {});
  }
  const status = await child.status;
  if (!/^HTTP\/1\.1 \d{3} /.test(head)) {
    throw new BenchFailure(`stdio server answered ${JSON.stringify(head)} instead of HTTP`);
  }
  if (!status.success) throw new BenchFailure(`stdio server exited with code ${status.code}`);
  return elapsed;
}

export async function startupTimes(
  kinds: ServerKind[],
  reps: number,
  dir: string,
  results: Results,
): Promise<void> {
  const label = `startup to first response (median of ${reps})`;
  const stdioLabel = `  startup: stdio (borgstore-server-rest --stdio)`;
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of kinds) {
      const dataDir = `${dir}/startup-${kind}-${rep}`;
      await Deno.mkdir(dataDir, { recursive: true });
      const ms = await startupOnce(kind, dataDir);
      results.add(kind, label, "ms", ms);
      log(`${kind.padEnd(9)} startup          ${ms.toFixed(0)} ms`);
      await Deno.remove(dataDir, { recursive: true });
    }
    if (kinds.includes("stowage")) {
      const dataDir = `${dir}/startup-stdio-${rep}`;
      await Deno.mkdir(dataDir, { recursive: true });
      const ms = await stdioStartupOnce(dataDir);
      results.add("stowage", stdioLabel, "ms", ms);
      log(`stowage   startup (stdio)  ${ms.toFixed(0)} ms`);
      await Deno.remove(dataDir, { recursive: true });
    }
  }
}
