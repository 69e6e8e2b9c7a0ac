// Shared pieces of the reliability suite (`deno task reliability`, tests/reliability_test.ts):
// figures and their pass rules, the seeded PRNG, sizes per scale, starting and killing stowage
// (through tests/_server.ts), disk measurements (usage as rest-server's --max-size counts it,
// temp files, snapshots), /proc readings of a child process, and small HTTP helpers.

import { createHash } from "node:crypto";
import { type Child, parseRawResponse, rawExchange, spawnStowage } from "../../tests/_server.ts";

export const BORG = "application/vnd.x.borgstore.rest.v1";
export const RESTIC_V2 = "application/vnd.x.restic.rest.v2";
export const TEMP_MARKER = ".stowage-tmp";

/** test: inside `deno test`; reduced: the default (CI); full: `--full`. */
export type Scale = "test" | "reduced" | "full";

export function bySize<T>(scale: Scale, values: { test: T; reduced: T; full: T }): T {
  return values[scale];
}

/** How a figure passes: must be 0, must be 1, below a bound, at least a bound, or informational. */
export type Rule =
  | { kind: "zero" }
  | { kind: "one" }
  | { kind: "below"; limit: number }
  | { kind: "atLeast"; limit: number }
  | { kind: "info" };

export const ZERO: Rule = { kind: "zero" };
export const ONE: Rule = { kind: "one" };
export const INFO: Rule = { kind: "info" };
export const below = (limit: number): Rule => ({ kind: "below", limit });
export const atLeast = (limit: number): Rule => ({ kind: "atLeast", limit });

export interface Figure {
  name: string;
  value: number;
  rule: Rule;
}

export function passes(figure: Figure): boolean {
  const { value, rule } = figure;
  switch (rule.kind) {
    case "zero":
      return value === 0;
    case "one":
      return value === 1;
    case "below":
      return value < rule.limit;
    case "atLeast":
      return value >= rule.limit;
    case "info":
      return true;
  }
}

export function describeRule(rule: Rule): string {
  switch (rule.kind) {
    case "zero":
      return "must be 0";
    case "one":
      return "must be 1";
    case "below":
      return `must be < ${rule.limit}`;
    case "atLeast":
      return `must be ≥ ${rule.limit}`;
    case "info":
      return "informational";
  }
}

/** What every part receives. */
export interface PartContext {
  scale: Scale;
  seed: number;
  /** A fresh temporary directory for this part (removed by the runner). */
  tmp: string;
  /** Progress and details, on stderr (never on stdout, which carries the figures). */
  log(line: string): void;
  /** Overrides the soak duration (`--soak-seconds`). */
  soakSeconds?: number;
}

export type Part = (ctx: PartContext) => Promise<Figure[]>;

// ---- seeded randomness --------------------------------------------------------------------

/** mulberry32: small, fast, reproducible. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = (seed >>> 0) || 0x9e3779b9;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Reproducible bytes (for small bodies; large ones use crypto randomness). */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** A child generator, so that one part's consumption does not shift another's. */
  fork(salt: number): Rng {
    return new Rng((this.next() * 4294967296) ^ Math.imul(salt, 0x85ebca6b));
  }
}

// ---- servers ------------------------------------------------------------------------------

export interface Server {
  url: string;
  port: number;
  pid: number;
  child: Child;
  /** SIGTERM (default) or SIGKILL, then wait for the exit. */
  stop(signal?: Deno.Signal): Promise<number>;
}

function wrap(child: Child, port: number): Server {
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.process.pid,
    child,
    stop: (signal: Deno.Signal = "SIGTERM") => child.stop(signal),
  };
}

/** `stowage serve <args>` on 127.0.0.1 (port 0 unless `--listen` is among `args`). */
export async function startServe(args: string[]): Promise<Server> {
  const listen = args.includes("--listen") ? [] : ["--listen", "127.0.0.1:0"];
  const child = await spawnStowage(["serve", ...args, ...listen]);
  return wrap(child, child.port);
}

/** `stowage borgstore-server-rest <args> --host 127.0.0.1 --port 0`. */
export async function startBorgstoreRest(args: string[]): Promise<Server> {
  const child = await spawnStowage(
    ["borgstore-server-rest", ...args, "--host", "127.0.0.1", "--port", "0"],
    { ready: /BorgStore REST server listening on / },
  );
  const line = child.stderr.find((l) => /listening on /.test(l)) ?? "";
  const match = /:(\d+)\s*$/.exec(line);
  if (!match) {
    await child.stop("SIGKILL");
    throw new Error(`no port in ${JSON.stringify(line)}`);
  }
  return wrap(child, Number(match[1]));
}

/** A loopback port that was free a moment ago (for restarting a server on the same port). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

// ---- /proc ----------------------------------------------------------------------------------

/** Resident set size of a process in KiB, or null when unreadable. */
export function vmRssKiB(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Open file descriptors of a process, or null when unreadable. */
export function fdCount(pid: number): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return null;
  }
}

// ---- disk -----------------------------------------------------------------------------------

export interface DiskState {
  /** Sum of lstat sizes of every entry below the root (files, temp files, dirs, links). */
  usage: number;
  /** The same, counting a file with several hard links once (what the disk really holds). */
  inodeUsage: number;
  /** Sum of the sizes of regular files only. */
  fileBytes: number;
  /** Sum of the sizes of directories (they grow in blocks as entries are added). */
  dirBytes: number;
  /** Paths (relative) of upload temp files. */
  temps: string[];
  files: number;
}

/**
 * Measures a data directory the way `--max-size` counts it (rest-server, spec §8): the lstat
 * size of every entry below the root, directories included, the root itself excluded. Entries
 * that vanish while walking are skipped.
 */
export function measureDisk(root: string): Promise<DiskState> {
  // Synchronous calls: several times faster than the async ones for thousands of entries.
  const state: DiskState = {
    usage: 0,
    inodeUsage: 0,
    fileBytes: 0,
    dirBytes: 0,
    temps: [],
    files: 0,
  };
  const inodes = new Set<number>();
  const pending: string[] = [""];
  while (pending.length > 0) {
    const rel = pending.pop()!;
    const dir = rel === "" ? root : `${root}/${rel}`;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(`${root}/${path}`);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) continue;
        throw error;
      }
      state.usage += info.size;
      if (!info.isFile || info.ino === null || !inodes.has(info.ino)) {
        state.inodeUsage += info.size;
        if (info.isFile && info.ino !== null) inodes.add(info.ino);
      }
      if (info.isDirectory) {
        state.dirBytes += info.size;
        pending.push(path);
      } else if (info.isFile) {
        state.files++;
        state.fileBytes += info.size;
        if (entry.name.includes(TEMP_MARKER)) state.temps.push(path);
      }
    }
  }
  return Promise.resolve(state);
}

/**
 * path → "dir" | "<size>:<sha256>" | "link:<target>" for every entry below `root`, skipping
 * the relative paths in `exclude` (and everything below them).
 */
export function snapshotTree(
  root: string,
  exclude: string[] = [],
): Promise<Map<string, string>> {
  // Synchronous calls: snapshots are taken around every request of a corpus.
  const out = new Map<string, string>();
  const pending: string[] = [""];
  while (pending.length > 0) {
    const rel = pending.pop()!;
    const dir = rel === "" ? root : `${root}/${rel}`;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (exclude.includes(path)) continue;
      const full = `${root}/${path}`;
      try {
        if (entry.isDirectory) {
          out.set(path + "/", "dir");
          pending.push(path);
        } else if (entry.isSymlink) {
          out.set(path, `link:${Deno.readLinkSync(full)}`);
        } else {
          const data = Deno.readFileSync(full);
          out.set(path, `${data.byteLength}:${sha256Hex(data)}`);
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
  }
  return Promise.resolve(out);
}

/** The differences between two snapshots, as short lines ("+ a", "- b", "~ c"). */
export function diffTrees(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [path, value] of after) {
    if (!before.has(path)) lines.push(`+ ${path}`);
    else if (before.get(path) !== value) lines.push(`~ ${path}`);
  }
  for (const path of before.keys()) if (!after.has(path)) lines.push(`- ${path}`);
  return lines.sort();
}

// ---- hashing, credentials -----------------------------------------------------------------

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** An htpasswd `{SHA}` line (no peer program needed). */
export function htpasswdSha(user: string, password: string): string {
  return `${user}:{SHA}${createHash("sha1").update(password).digest("base64")}`;
}

export function basic(user: string, password: string): string {
  return "Basic " + btoa(`${user}:${password}`);
}

/** Reads `n` bytes of `data` as an ArrayBuffer-backed copy (fetch bodies). */
export function copyBytes(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.byteLength);
  out.set(data);
  return out;
}

// ---- HTTP ---------------------------------------------------------------------------------

export interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** One fetch; the body is read completely. Network failures reject. */
export async function request(
  url: string,
  init: RequestInit & { client?: Deno.HttpClient } = {},
): Promise<Reply> {
  const response = await fetch(url, { redirect: "manual", ...init });
  const body = init.method === "HEAD"
    ? new Uint8Array()
    : new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

/** Like request() but returns status 0 instead of rejecting on network failures. */
export async function tryRequest(
  url: string,
  init: RequestInit & { client?: Deno.HttpClient } = {},
): Promise<Reply> {
  try {
    return await request(url, init);
  } catch {
    return { status: 0, headers: new Headers(), body: new Uint8Array() };
  }
}

/**
 * A raw exchange on a fresh connection: the status of the first response, or 0 when the server
 * closed the connection without answering (or the timeout struck).
 */
export async function rawStatus(
  port: number,
  bytes: string | Uint8Array,
  options: { halfClose?: boolean; timeoutMs?: number; head?: boolean } = {},
): Promise<{ status: number; text: string }> {
  let raw: Uint8Array;
  try {
    raw = await rawExchange(port, bytes, {
      halfClose: options.halfClose,
      timeoutMs: options.timeoutMs ?? 3000,
    });
  } catch {
    return { status: 0, text: "" };
  }
  try {
    const parsed = parseRawResponse(raw, options.head);
    return { status: Number.isFinite(parsed.status) ? parsed.status : 0, text: parsed.text };
  } catch {
    return { status: 0, text: "" };
  }
}

/** Reads `stowage_quota_usage_bytes` from /metrics (the server needs --prometheus). */
export async function metricsQuotaUsage(url: string): Promise<number | null> {
  const reply = await tryRequest(`${url}/metrics`);
  if (reply.status !== 200) return null;
  const text = new TextDecoder().decode(reply.body);
  const match = /^stowage_quota_usage_bytes (\d+)/m.exec(text);
  return match ? Number(match[1]) : null;
}

/** `POST /<store>/?cmd=quota` → usage, or null. */
export async function borgQuotaUsage(
  url: string,
  store: string,
  headers: Record<string, string> = {},
): Promise<number | null> {
  const reply = await tryRequest(`${url}/${store}/?cmd=quota`, {
    method: "POST",
    headers: { accept: BORG, ...headers },
  });
  if (reply.status !== 200) return null;
  try {
    return (JSON.parse(new TextDecoder().decode(reply.body)) as { usage: number }).usage;
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `tasks` with at most `limit` at a time. */
export async function pool<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/**
 * Creates restic repositories (type directories and `data/xx`) and borg stores (namespaces and
 * `packs/xx`) on disk: every two-hex directory, or only the given prefixes.
 */
export async function precreateLayout(
  data: string,
  layout: { restic?: string[]; borg?: string[]; prefixes?: string[] },
): Promise<void> {
  const hex = layout.prefixes ??
    Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
  for (const repo of layout.restic ?? []) {
    for (const type of ["index", "keys", "locks", "snapshots"]) {
      await Deno.mkdir(`${data}/${repo}/${type}`, { recursive: true });
    }
    for (const h of hex) await Deno.mkdir(`${data}/${repo}/data/${h}`, { recursive: true });
  }
  for (const store of layout.borg ?? []) {
    for (const ns of ["config", "keys", "locks", "archives", "index"]) {
      await Deno.mkdir(`${data}/${store}/${ns}`, { recursive: true });
    }
    for (const h of hex) await Deno.mkdir(`${data}/${store}/packs/${h}`, { recursive: true });
  }
}
