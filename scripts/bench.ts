// `deno task bench [-- --runs N --quick --only a,b --no-reference --no-ceiling --dir DIR]`: loopback
// benchmark of stowage against `rclone serve restic` (when installed) as a side-by-side reference,
// and of the small-request workloads against the ceiling server (the least a server can do, so
// the harness' own limit on this machine). Each run starts every server fresh on an empty
// temporary directory, interleaved (stowage, reference, ceiling, stowage, …); every uploaded
// object is read back and checked. Progress goes to stderr; the one table of medians goes to
// stdout. Helpers: scripts/bench/.

import {
  BIG_CONCURRENCY,
  CEILING_WORKLOADS,
  parseOptions,
  type Sizes,
  USAGE,
  UsageError,
  type Workload,
} from "./bench/config.ts";
import { BenchData, log, newSession, type Session } from "./bench/context.ts";
import {
  bigUpload,
  bigUploadsConcurrent,
  prepareTree,
  resticAvailable,
  resticBackup,
  startupTimes,
} from "./bench/extras.ts";
import { runBorgstore } from "./bench/borgstore.ts";
import { BenchFailure } from "./bench/http.ts";
import { Results } from "./bench/report.ts";
import { RESTIC_WORKLOADS, runResticWorkloads } from "./bench/restic.ts";
import {
  rcloneVersion,
  type RunningServer,
  type ServerKind,
  serverOrder,
  startServer,
} from "./bench/servers.ts";

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === null) {
    console.log(USAGE);
    return 0;
  }
  const only = options.only;
  const reference = options.reference ? await rcloneVersion() : null;
  if (options.reference && reference === null) log("rclone not found: no reference column");
  const kinds: ServerKind[] = reference ? ["stowage", "reference"] : ["stowage"];
  const hasRestic = await resticAvailable();
  if (only.has("restic-backup") && !hasRestic) log("restic not found: skipping restic backup");

  if (options.dir !== undefined && !isDirectory(options.dir)) {
    console.error(`error: --dir ${options.dir}: not a directory`);
    return 2;
  }
  const root = await Deno.makeTempDir({ prefix: "stowage-bench-", dir: options.dir });
  const running = new Set<RunningServer>();
  const cleanup = async () => {
    for (const server of running) await server.stop().catch(() => {});
    await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  const onSignal = () => {
    console.error("\ninterrupted: stopping servers, removing temporary files");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const ceilingOnly = new Set(CEILING_WORKLOADS.filter((w) => only.has(w)));
  const ceiling = options.ceiling && ceilingOnly.size > 0;
  const results = new Results();
  const data = new BenchData(options.sizes);
  const started = performance.now();
  let dirCount = 0;
  /** One fresh server process on an empty directory for `body`, stopped (and wiped) after. */
  const withServer = async (
    kind: ServerKind,
    body: (session: Session) => Promise<void>,
    sessionOptions = options,
  ) => {
    const dir = `${root}/${kind}-${++dirCount}`;
    await Deno.mkdir(dir);
    const server = await startServer(kind, dir);
    running.add(server);
    try {
      await body(newSession(server, sessionOptions, data, results, root));
    } catch (error) {
      if (error instanceof Error) {
        error.message += `\n--- last ${kind} stderr lines ---\n${server.tail()}`;
      }
      throw error;
    } finally {
      running.delete(server);
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  };

  try {
    const resticSelected = RESTIC_WORKLOADS.some((w) => only.has(w));
    const sessionOne = resticSelected || only.has("borgstore");
    const sessionTwo = only.has("upload-1g") || only.has("upload-1g-c16") ||
      (only.has("restic-backup") && hasRestic);
    const treeDir = `${root}/tree`;
    if (only.has("restic-backup") && hasRestic) {
      await prepareTree(treeDir, options.sizes.tree);
    }
    prepareData(data, options.sizes, only);

    for (let run = 1; run <= options.runs; run++) {
      log(`--- run ${run} of ${options.runs}`);
      const order = serverOrder(kinds, run);
      if (sessionOne) {
        for (const kind of resticSelected ? order : ["stowage" as const]) {
          await withServer(kind, async (session) => {
            if (resticSelected) {
              await runResticWorkloads(session);
              results.add(kind, "peak RSS, restic workloads", "MiB", session.peakRssMiB);
            }
            if (kind === "stowage" && only.has("borgstore")) await runBorgstore(session);
          });
        }
      }
      if (ceiling) {
        await withServer("ceiling", runResticWorkloads, { ...options, only: ceilingOnly });
      }
      if (sessionTwo) {
        for (const kind of order) {
          await withServer(kind, async (session) => {
            if (only.has("upload-1g")) await bigUpload(session);
            if (only.has("upload-1g-c16")) await bigUploadsConcurrent(session, BIG_CONCURRENCY);
            if (only.has("restic-backup") && hasRestic) {
              const cacheDir = `${root}/restic-cache-${dirCount}`;
              await resticBackup(session, treeDir, cacheDir);
              await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
            }
          });
        }
      }
    }
    if (only.has("startup")) {
      log(`--- startup`);
      await startupTimes(kinds, options.sizes.startupReps, root, results);
    }
  } catch (error) {
    await cleanup();
    const text = error instanceof BenchFailure
      ? error.message
      : error instanceof Error
      ? error.stack ?? error.message
      : String(error);
    console.error(`\nBENCH FAILED: ${text}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  await cleanup();

  const minutes = ((performance.now() - started) / 60000).toFixed(1);
  console.log(
    `\nstowage bench — ${options.quick ? "quick" : "full"} sizes, ${options.runs} interleaved ` +
      `run(s), medians, loopback, ${navigator.hardwareConcurrency} CPUs, ${minutes} min\n`,
  );
  console.log(results.table());
  console.log(
    `\nratio = stowage / reference: above 1 is better for MiB/s and req/s, worse for ms, s, MiB.`,
  );
  console.log(`server CPU = utime + stime of the server process over the workload.`);
  if (ceiling) {
    console.log(
      `ceiling = scripts/bench/ceiling_server.ts: Deno.serve, objects in memory, no checks — ` +
        `the most this client gets on this machine; "of ceiling" = stowage / ceiling.`,
    );
  }
  console.log(
    reference
      ? `reference: ${reference}, \`rclone serve restic\` — no upload verification, no fsync; ` +
        `stowage verifies SHA-256 of every upload and fsyncs file and directory.`
      : `reference: none (${options.reference ? "rclone not installed" : "--no-reference"}).`,
  );
  return 0;
}

/** Builds the payloads the selected workloads need before any timing starts. */
function prepareData(data: BenchData, sizes: Sizes, only: Set<Workload>): void {
  const started = performance.now();
  const needs = (...names: Workload[]) => names.some((n) => only.has(n));
  if (needs("upload-large", "range", "download", "borgstore")) void data.large;
  if (needs("upload-small", "head", "list", "get-small", "borgstore")) void data.small;
  if (needs("range-4k")) void data.rangeObject;
  if (needs("upload-1g", "upload-1g-c16")) void data.big;
  log(
    `prepared payloads and IDs (${sizes.largeCount} large, ${sizes.smallCount} small) in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}

if (import.meta.main) Deno.exit(await main());
