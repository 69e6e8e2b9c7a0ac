// Part 1, crash torture. One data directory holds a restic repository /r/ and a borg store /b/
// (every directory pre-created, so the quota model below is exact). Each iteration starts
// `stowage serve --no-auth --max-size LARGE --prometheus`, compares the reported quota usage
// with the disk, then runs at the same time concurrent restic (POST /r/data/<id>) and borg
// (POST /b/packs/xx/<hex> with X-Content-hash-sha256) uploads of 0–2 MiB and the verification of
// what earlier iterations left (reads, listings, deletes), and SIGKILLs the server at a random
// moment (15 % of the iterations first disconnect every client mid-upload and wait for the
// server's accounting to settle). Iterations stop at the kill count or at the time budget,
// whichever comes first. What the verification checks:
// - every acknowledged (200) object is present and byte-correct (GET + sha256), else lost/corrupt;
// - every visible object (listings of /r/data/ and the touched /b/packs/xx/, every object whose
//   upload or DELETE was cut) hashes to its name, and no temp file name is listed or readable;
// - quota: the usage the server reports (`stowage_quota_usage_bytes` on /metrics and `usage` of
//   `POST /b/?cmd=quota`, the same tracker) equals the usage measured on disk. "Usage on disk" is
//   the sum of lstat sizes of every entry below the data directory — files, temp files of killed
//   uploads, each hard link, directories — the data directory itself excluded: what --max-size
//   counts (rest-server, spec §8). It is compared only while no request runs and when no
//   directory was created since the server started (the server measures directories only at
//   start; for the same reason a directory that grew by a block counts at its start size).
// Reads, listings and deletes cut by a kill are carried over to the next iteration (an
// unanswered DELETE leaves its object "maybe there, but complete if visible").
// Finally temp files are backdated past the sweep age and the server restarted once more: the
// sweep must remove them and the reported usage must still equal the disk.
// The second half (`crash-restic`) kills the server under real `restic backup` runs (restic
// retries against the restarted server), then `restic unlock`, another backup and
// `restic check --read-data`.

import { createHash } from "node:crypto";
import { peerMissing } from "../../tests/_peers.ts";
import { randomBytes } from "../../tests/_server.ts";
import {
  atLeast,
  BORG,
  borgQuotaUsage,
  bySize,
  type DiskState,
  type Figure,
  freePort,
  INFO,
  measureDisk,
  metricsQuotaUsage,
  type PartContext,
  pool,
  precreateLayout,
  RESTIC_V2,
  Rng,
  type Server,
  sha256Hex,
  sleep,
  startServe,
  TEMP_MARKER,
  tryRequest,
  ZERO,
} from "./common.ts";

type Proto = "restic" | "borg";

interface Obj {
  proto: Proto;
  id: string;
  size: number;
}

function objectPath(obj: { proto: Proto; id: string }): string {
  return obj.proto === "restic" ? `/r/data/${obj.id}` : `/b/packs/${obj.id.slice(0, 2)}/${obj.id}`;
}

function keyOf(obj: { proto: Proto; id: string }): string {
  return `${obj.proto}:${obj.id}`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The torture uses only IDs starting with "0" (plus the empty object's "e3"): 17 directories
 * per protocol instead of 256 keep every restart's quota walk and every listing cheap. A body's
 * last 8 bytes are a nonce chosen for that (hash state copied, so each try costs 8 bytes).
 */
export const PREFIXES = [
  ...Array.from({ length: 16 }, (_, i) => `0${i.toString(16)}`),
  "e3",
];

function prefixedBody(size: number): { body: Uint8Array<ArrayBuffer>; id: string } {
  if (size === 0) return { body: new Uint8Array(), id: sha256Hex(new Uint8Array()) };
  size = Math.max(8, size);
  const body = randomBytes(size);
  const head = createHash("sha256").update(body.subarray(0, size - 8));
  const tail = body.subarray(size - 8);
  const view = new DataView(tail.buffer, tail.byteOffset, 8);
  for (let nonce = 0;; nonce++) {
    view.setUint32(4, nonce);
    const id = head.copy().update(tail).digest("hex");
    if (id[0] === "0") return { body, id };
  }
}

/** Sizes 0–2 MiB, most of them small (as packs and index files mix in a real backup). */
function pickSize(rng: Rng): number {
  const r = rng.next();
  if (r < 0.05) return 0;
  if (r < 0.6) return rng.int(1, 64 * 1024);
  if (r < 0.9) return rng.int(64 * 1024, 512 * 1024);
  return rng.int(512 * 1024, 2 * 1024 * 1024);
}

class Tally {
  kills = 0;
  acknowledged = 0;
  lost = 0;
  corrupt = 0;
  visiblePartials = 0;
  quotaChecks = 0;
  quotaMismatch = 0;
  unexpectedStatus = 0;
  cutUploads = 0;
  details: string[] = [];

  note(line: string): void {
    if (this.details.length < 40) this.details.push(line);
  }
}

interface TortureState {
  data: string;
  rng: Rng;
  tally: Tally;
  /** Acknowledged since the last verification. */
  ackedNew: Map<string, Obj>;
  /** Attempted, not acknowledged (cut by the kill, or refused). */
  pending: Map<string, Obj>;
  /** Verified present and correct, kept (not deleted) until the end. */
  retained: Map<string, Obj>;
  /** Every name ever verified correct (skip re-reading in listings). */
  verified: Set<string>;
  /** Temp files already probed through the API. */
  probedTemps: Set<string>;
  /** Borg directories touched since the last listing. */
  touchedDirs: Set<string>;
  /** Directory bytes when the running server started (it counts directories only then). */
  dirBytesAtStart: number;
}

const SERVER_ARGS = (data: string) => [
  "--path",
  data,
  "--no-auth",
  "--max-size",
  String(10 ** 12),
  "--prometheus",
];

async function readObject(
  url: string,
  obj: { proto: Proto; id: string },
  client: Deno.HttpClient,
) {
  const headers: Record<string, string> = obj.proto === "borg" ? { accept: BORG } : {};
  return await tryRequest(url + objectPath(obj), { headers, client });
}

/** The usage the server should report for `disk` (directories as they were at its start). */
function expectedUsage(state: TortureState, disk: DiskState): number {
  return disk.usage - disk.dirBytes + state.dirBytesAtStart;
}

/**
 * Compares reported usage with the disk; the server must be idle. `measured`: a measurement taken
 * while nothing could change the disk (before the server started). Returns the measurement.
 */
async function checkQuota(
  server: Server,
  state: TortureState,
  when: string,
  measured?: DiskState,
): Promise<DiskState> {
  const disk = measured ?? await measureDisk(state.data);
  const metrics = await metricsQuotaUsage(server.url);
  const borg = await borgQuotaUsage(server.url, "b");
  const expected = expectedUsage(state, disk);
  state.tally.quotaChecks++;
  if (metrics !== expected || borg !== expected) {
    state.tally.quotaMismatch++;
    state.tally.note(
      `quota ${when}: /metrics ${metrics}, cmd=quota ${borg}, disk ${expected} ` +
        `(${disk.temps.length} temp files)`,
    );
  }
  return disk;
}

/** Temp files of killed uploads: on disk, but never readable through either protocol. */
async function probeTemps(server: Server, state: TortureState, disk: DiskState): Promise<void> {
  const fresh = disk.temps.filter((t) => !state.probedTemps.has(t));
  for (const temp of fresh.slice(0, 6)) {
    const [top, ...rest] = temp.split("/");
    const inside = rest.join("/");
    const reply = top === "b"
      ? await tryRequest(`${server.url}/b/${inside}`, { headers: { accept: BORG } })
      : await tryRequest(`${server.url}/r/${inside}`);
    if (reply.status === 200 || reply.status === 206) {
      state.tally.visiblePartials++;
      state.tally.note(`temp file readable: ${temp}`);
    }
  }
  for (const temp of fresh) state.probedTemps.add(temp);
}

type Verdict = "ok" | "absent" | "bad" | "cut";

/**
 * GETs an object. `mustExist`: acknowledged (404 = lost, wrong bytes = corrupt); otherwise it
 * may be absent but must be complete when visible. "cut": the server died during the request.
 */
async function verifyObject(
  server: Server,
  state: TortureState,
  obj: { proto: Proto; id: string; size?: number },
  mustExist: boolean,
  client: Deno.HttpClient,
): Promise<Verdict> {
  const reply = await readObject(server.url, obj, client);
  if (reply.status === 0) return "cut";
  const complete = reply.status === 200 && sha256Hex(reply.body) === obj.id &&
    (obj.size === undefined || reply.body.byteLength === obj.size);
  if (complete) {
    state.verified.add(keyOf(obj));
    return "ok";
  }
  if (reply.status === 404) {
    if (!mustExist) return "absent";
    state.tally.lost++;
    state.tally.note(`lost ${keyOf(obj)} (${obj.size} bytes)`);
    return "bad";
  }
  if (mustExist) state.tally.corrupt++;
  else state.tally.visiblePartials++;
  state.tally.note(
    `${mustExist ? "corrupt" : "visible partial"} ${keyOf(obj)}: ${reply.status}, ` +
      `${reply.body.byteLength} bytes`,
  );
  return "bad";
}

/** Names in a listing; null when the kill cut it (or it failed: counted as unexpected). */
async function listNames(
  server: Server,
  state: TortureState,
  path: string,
  proto: Proto,
  client: Deno.HttpClient,
): Promise<string[] | null> {
  const reply = await tryRequest(server.url + path, {
    headers: { accept: proto === "borg" ? BORG : RESTIC_V2 },
    client,
  });
  if (reply.status === 404) return [];
  if (reply.status !== 200) {
    if (reply.status !== 0) {
      state.tally.unexpectedStatus++;
      state.tally.note(`GET ${path} → ${reply.status}`);
    }
    return null;
  }
  const entries = JSON.parse(new TextDecoder().decode(reply.body)) as { name: string }[];
  return entries.map((e) => e.name);
}

/** Checks listed names: no temp names, every name not verified before hashes to itself. */
async function checkListing(
  server: Server,
  state: TortureState,
  proto: Proto,
  names: string[],
  client: Deno.HttpClient,
): Promise<void> {
  const unknown: string[] = [];
  for (const name of names) {
    if (name.includes(TEMP_MARKER) || !HEX64.test(name)) {
      state.tally.visiblePartials++;
      state.tally.note(`listed ${proto} name ${JSON.stringify(name)}`);
    } else if (!state.verified.has(`${proto}:${name}`)) {
      unknown.push(name);
    }
  }
  await pool(
    4,
    unknown.map((id) => () => verifyObject(server, state, { proto, id }, false, client)),
  );
}

/** What one verification round works on, taken before the round's uploads start. */
interface Work {
  acked: Obj[];
  pending: Obj[];
  dirs: string[];
}

function takeWork(state: TortureState, fullListing: boolean): Work {
  const work = {
    acked: [...state.ackedNew.values()],
    pending: [...state.pending.values()],
    dirs: fullListing ? PREFIXES : [...state.touchedDirs],
  };
  state.ackedNew.clear();
  state.pending.clear();
  state.touchedDirs.clear();
  return work;
}

/**
 * Verifies what earlier rounds left and deletes most of it, while this round's uploads run (so
 * the kill also cuts reads, listings and deletes). Whatever a kill interrupts is carried over:
 * unverified objects stay acknowledged or pending, an unanswered DELETE makes its object pending
 * (it may or may not exist, but if it does it must be complete).
 */
async function verifier(
  server: Server,
  state: TortureState,
  work: Work,
  client: Deno.HttpClient,
): Promise<void> {
  const { tally } = state;
  const survivors = new Map<string, Obj>();
  await pool(4, [
    ...work.acked.map((obj) => async () => {
      const verdict = await verifyObject(server, state, obj, true, client);
      if (verdict === "cut") state.ackedNew.set(keyOf(obj), obj);
      if (verdict === "ok") survivors.set(keyOf(obj), obj);
    }),
    ...work.pending.map((obj) => async () => {
      const verdict = await verifyObject(server, state, obj, false, client);
      if (verdict === "cut") state.pending.set(keyOf(obj), obj);
      if (verdict === "ok") survivors.set(keyOf(obj), obj);
    }),
  ]);
  const resticNames = await listNames(server, state, "/r/data/", "restic", client);
  if (resticNames !== null) await checkListing(server, state, "restic", resticNames, client);
  for (const dir of work.dirs) {
    const names = await listNames(server, state, `/b/packs/${dir}/`, "borg", client);
    if (names !== null) await checkListing(server, state, "borg", names, client);
    else state.touchedDirs.add(dir);
  }
  // keep one in ten verified objects (and the empty one, which uploads repeat) to the end;
  // delete the rest (bounded disk use)
  const doomed: Obj[] = [];
  for (const [key, obj] of survivors) {
    if (state.retained.has(key)) continue;
    if (obj.size === 0 || state.rng.chance(0.1)) state.retained.set(key, obj);
    else doomed.push(obj);
  }
  await pool(
    4,
    doomed.map((obj) => async () => {
      const headers: Record<string, string> = obj.proto === "borg" ? { accept: BORG } : {};
      state.verified.delete(keyOf(obj));
      const reply = await tryRequest(server.url + objectPath(obj), {
        method: "DELETE",
        headers,
        client,
      });
      if (reply.status === 0) state.pending.set(keyOf(obj), obj);
      else if (reply.status !== 200) {
        tally.unexpectedStatus++;
        tally.note(`DELETE ${keyOf(obj)} → ${reply.status}`);
      }
    }),
  );
}

/** Concurrent uploads until `stop` aborts them (client disconnect) or the server dies. */
async function uploader(
  proto: Proto,
  server: Server,
  state: TortureState,
  client: Deno.HttpClient,
  signal: AbortSignal,
): Promise<void> {
  const rng = state.rng.fork(proto === "restic" ? 1 : 2);
  while (!signal.aborted) {
    const { body, id } = prefixedBody(pickSize(rng));
    const size = body.byteLength;
    const obj: Obj = { proto, id, size };
    state.pending.set(keyOf(obj), obj);
    if (proto === "borg") state.touchedDirs.add(id.slice(0, 2));
    const chunked = rng.chance(0.2);
    const payload: BodyInit = chunked
      ? new ReadableStream<Uint8Array>({
        start(controller) {
          for (let at = 0; at < size; at += 256 * 1024) {
            controller.enqueue(body.subarray(at, Math.min(size, at + 256 * 1024)));
          }
          controller.close();
        },
      })
      : body;
    const headers: Record<string, string> = proto === "borg"
      ? { accept: BORG, "x-content-hash-sha256": id }
      : {};
    let status: number;
    try {
      const response = await fetch(server.url + objectPath(obj), {
        method: "POST",
        body: payload,
        headers,
        signal,
        client,
      });
      await response.body?.cancel();
      status = response.status;
    } catch {
      return; // killed server or aborted client: the object stays pending
    }
    if (status === 200) {
      state.pending.delete(keyOf(obj));
      state.ackedNew.set(keyOf(obj), obj);
      state.tally.acknowledged++;
    } else {
      state.tally.unexpectedStatus++;
      state.tally.note(`POST ${keyOf(obj)} → ${status}`);
    }
  }
}

async function tortureIteration(
  state: TortureState,
  iteration: number,
  sizes: { workers: number; killMs: [number, number] },
): Promise<void> {
  const before = await measureDisk(state.data);
  state.dirBytesAtStart = before.dirBytes;
  const server = await startServe(SERVER_ARGS(state.data));
  const client = Deno.createHttpClient({});
  const checks = Deno.createHttpClient({});
  const abort = new AbortController();
  const workers: Promise<void>[] = [];
  let verifying: Promise<void> = Promise.resolve();
  try {
    await probeTemps(server, state, await checkQuota(server, state, "after restart", before));
    const work = takeWork(state, iteration % 25 === 0);
    for (let i = 0; i < sizes.workers; i++) {
      workers.push(uploader(i % 2 === 0 ? "restic" : "borg", server, state, client, abort.signal));
    }
    verifying = verifier(server, state, work, checks);
    await sleep(state.rng.int(sizes.killMs[0], sizes.killMs[1]));
    if (state.rng.chance(0.15)) {
      // clients vanish mid-upload; the server must clean up and account exactly
      abort.abort();
      await Promise.all(workers);
      await verifying;
      state.tally.cutUploads++;
      // Bodies already in the socket buffers still arrive and commit after the clients left:
      // wait until no upload runs (no new temp file, usage equal) three polls in a row.
      let stable = 0;
      for (let i = 0; i < 60 && stable < 3; i++) {
        const disk = await measureDisk(state.data);
        const quiet = disk.temps.every((t) => state.probedTemps.has(t)) &&
          (await metricsQuotaUsage(server.url)) === expectedUsage(state, disk);
        stable = quiet ? stable + 1 : 0;
        await sleep(100);
      }
      await checkQuota(server, state, "after client disconnects and deletes");
    }
  } finally {
    await server.stop("SIGKILL");
    state.tally.kills++;
    abort.abort();
    await Promise.all(workers);
    await verifying;
    client.close();
    checks.close();
  }
}

export async function crashTorture(ctx: PartContext): Promise<Figure[]> {
  const sizes = bySize(ctx.scale, {
    test: { kills: 20, budgetMs: 30_000, workers: 4, killMs: [20, 250] as [number, number] },
    reduced: { kills: 200, budgetMs: 100_000, workers: 6, killMs: [20, 200] as [number, number] },
    full: { kills: 1000, budgetMs: 1_500_000, workers: 8, killMs: [20, 800] as [number, number] },
  });
  const data = `${ctx.tmp}/data`;
  await precreateLayout(data, { restic: ["r"], borg: ["b"], prefixes: PREFIXES });
  await Deno.writeTextFile(`${data}/r/config`, "restic config placeholder");
  const tally = new Tally();
  const state: TortureState = {
    data,
    rng: new Rng(ctx.seed).fork(101),
    tally,
    ackedNew: new Map(),
    pending: new Map(),
    retained: new Map(),
    verified: new Set(),
    probedTemps: new Set(),
    touchedDirs: new Set(),
    dirBytesAtStart: 0,
  };
  const started = Date.now();
  for (let i = 0; i < sizes.kills && Date.now() - started < sizes.budgetMs; i++) {
    await tortureIteration(state, i, sizes);
    if ((i + 1) % 25 === 0) {
      ctx.log(
        `crash: ${i + 1} kills, ${tally.acknowledged} acknowledged, ` +
          `${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
    }
  }
  if (tally.kills < sizes.kills) {
    ctx.log(`crash: time budget reached after ${tally.kills} of ${sizes.kills} kills`);
  }

  // final restart: everything acknowledged and retained is still there
  let tempsLeft = 0;
  let swept = 0;
  let mismatchAfterSweep = 0;
  state.dirBytesAtStart = (await measureDisk(data)).dirBytes;
  const server = await startServe(SERVER_ARGS(data));
  const checks = Deno.createHttpClient({});
  try {
    await probeTemps(server, state, await checkQuota(server, state, "after the last restart"));
    await verifier(server, state, takeWork(state, true), checks);
    await pool(
      4,
      [...state.retained.values()].map((obj) => () =>
        verifyObject(server, state, obj, true, checks)
      ),
    );
    await checkQuota(server, state, "at the end");
    tempsLeft = (await measureDisk(data)).temps.length;
  } finally {
    checks.close();
    await server.stop("SIGTERM");
  }

  // temp files older than the sweep age are removed at start; usage must follow
  const old = new Date(Date.now() - 2 * 3600 * 1000);
  for (const temp of (await measureDisk(data)).temps) {
    await Deno.utime(`${data}/${temp}`, old, old).catch(() => {});
  }
  state.dirBytesAtStart = (await measureDisk(data)).dirBytes;
  const swept2 = await startServe(SERVER_ARGS(data));
  try {
    if (tempsLeft > 0) {
      const line = await swept2.child.waitForLine(/Removed \d+ abandoned upload temp file/, 10_000)
        .catch(() => "");
      swept = Number(/Removed (\d+)/.exec(line)?.[1] ?? "0");
    }
    const disk = await measureDisk(data);
    const metrics = await metricsQuotaUsage(swept2.url);
    if (disk.temps.length > 0) {
      tally.note(`${disk.temps.length} temp files survived the sweep`);
    }
    if (metrics !== expectedUsage(state, disk)) {
      mismatchAfterSweep = 1;
      tally.note(
        `quota after sweep: /metrics ${metrics}, disk ${expectedUsage(state, disk)} ` +
          `(swept ${swept})`,
      );
    }
  } finally {
    await swept2.stop("SIGTERM");
  }

  for (const line of tally.details) ctx.log(`crash: ${line}`);
  return [
    { name: "crash.kills", value: tally.kills, rule: atLeast(1) },
    { name: "crash.acknowledged", value: tally.acknowledged, rule: atLeast(1) },
    { name: "crash.lost", value: tally.lost, rule: ZERO },
    { name: "crash.corrupt", value: tally.corrupt, rule: ZERO },
    { name: "crash.visible_partials", value: tally.visiblePartials, rule: ZERO },
    { name: "crash.temp_files_left_invisible", value: tempsLeft, rule: INFO },
    { name: "crash.temp_files_swept", value: swept, rule: INFO },
    { name: "crash.client_disconnect_rounds", value: tally.cutUploads, rule: INFO },
    { name: "crash.unexpected_status", value: tally.unexpectedStatus, rule: ZERO },
    { name: "crash.quota_checks", value: tally.quotaChecks, rule: INFO },
    { name: "crash.quota_mismatch", value: tally.quotaMismatch, rule: ZERO },
    { name: "crash.quota_mismatch_after_sweep", value: mismatchAfterSweep, rule: ZERO },
  ];
}

// ---- restic under SIGKILL --------------------------------------------------------------------

async function writeRandomFiles(dir: string, rng: Rng, count: number, maxBytes: number) {
  await Deno.mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const name = `f-${Date.now().toString(36)}-${rng.int(0, 1e9).toString(36)}`;
    await Deno.writeFile(`${dir}/${name}`, randomBytes(rng.int(1024, maxBytes)));
  }
}

interface ResticRun {
  code: number;
  output: string;
}

function restic(
  args: string[],
  env: Record<string, string>,
): { child: Deno.ChildProcess; done: Promise<ResticRun> } {
  const child = new Deno.Command("restic", {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = child.output().then((out) => ({
    code: out.code,
    output: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
  }));
  return { child, done };
}

async function startOnPort(data: string, port: number): Promise<Server> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return await startServe(["--path", data, "--no-auth", "--listen", `127.0.0.1:${port}`]);
    } catch (error) {
      lastError = error; // the port may still be held for a moment
      await sleep(250);
    }
  }
  throw lastError;
}

export async function crashRestic(ctx: PartContext): Promise<Figure[]> {
  if (peerMissing("restic")) {
    ctx.log("crash-restic: restic not installed, skipped");
    return [];
  }
  const sizes = bySize(ctx.scale, {
    test: { rounds: 1, files: 6, maxBytes: 1024 * 1024, limitKiB: 2048 },
    reduced: { rounds: 3, files: 10, maxBytes: 1536 * 1024, limitKiB: 4096 },
    full: { rounds: 10, files: 16, maxBytes: 2048 * 1024, limitKiB: 4096 },
  });
  const rng = new Rng(ctx.seed).fork(202);
  const data = `${ctx.tmp}/restic-data`;
  const source = `${ctx.tmp}/restic-source`;
  await Deno.mkdir(data, { recursive: true });
  await writeRandomFiles(source, rng, sizes.files, sizes.maxBytes);
  const port = freePort();
  const env = {
    RESTIC_PASSWORD: "reliability",
    RESTIC_REPOSITORY: `rest:http://127.0.0.1:${port}/repo/`,
    RESTIC_CACHE_DIR: `${ctx.tmp}/restic-cache`,
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: ctx.tmp,
  };
  let server = await startOnPort(data, port);
  let kills = 0;
  let errors = 0;
  let backupFailures = 0;
  try {
    const init = await restic(["init"], env).done;
    if (init.code !== 0) throw new Error(`restic init failed:\n${init.output}`);
    for (let round = 0; round < sizes.rounds; round++) {
      await writeRandomFiles(`${source}/round-${round}`, rng, sizes.files, sizes.maxBytes);
      const run = restic(
        ["backup", "--host", "reliability", "--limit-upload", String(sizes.limitKiB), source],
        env,
      );
      let finished = false;
      run.done.then(() => finished = true);
      // kill once the first new pack of this backup has arrived, plus a random moment
      const packsBefore = (await measureDisk(`${data}/repo/data`)).files;
      for (let i = 0; i < 400 && !finished; i++) {
        if ((await measureDisk(`${data}/repo/data`)).files > packsBefore) break;
        await sleep(50);
      }
      await sleep(rng.int(0, 600));
      if (finished) ctx.log(`crash-restic: round ${round}: backup finished before the kill`);
      await server.stop("SIGKILL");
      kills++;
      await sleep(rng.int(100, 800));
      server = await startOnPort(data, port);
      const timer = setTimeout(() => {
        try {
          run.child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 180_000);
      const result = await run.done;
      clearTimeout(timer);
      ctx.log(`crash-restic: round ${round}: killed server mid-backup, restic exit ${result.code}`);
    }
    const unlock = await restic(["unlock"], env).done;
    if (unlock.code !== 0) ctx.log(`crash-restic: unlock exit ${unlock.code}:\n${unlock.output}`);
    const backup = await restic(["backup", "--host", "reliability", source], env).done;
    if (backup.code !== 0) {
      backupFailures++;
      ctx.log(`crash-restic: final backup failed (${backup.code}):\n${backup.output}`);
    }
    const check = await restic(["check", "--read-data"], env).done;
    if (check.code !== 0) {
      const lines = check.output.split("\n").filter((l) => /error|fatal|invalid/i.test(l));
      errors = Math.max(1, lines.length);
      ctx.log(`crash-restic: check --read-data failed (${check.code}):\n${check.output}`);
    }
  } finally {
    await server.stop("SIGTERM");
  }
  return [
    { name: "crash.restic_kills", value: kills, rule: INFO },
    { name: "crash.restic_backup_failures", value: backupFailures, rule: ZERO },
    { name: "crash.restic_check_errors", value: errors, rule: ZERO },
  ];
}
