// Owns the htpasswd file: parsing, password hash verification (bcrypt, {SHA}, $apr1$, $5$, $6$),
// the success cache (SHA-256 of user:password, 60 s) and reloading when the file changes.

import { type NodeCrypto, nodeCrypto } from "../stream/node_crypto.ts";

/** Receives one log line without trailing newline. */
export type LogFn = (line: string) => void;

/** Result of parsing an htpasswd file: user → hash, plus warnings that never contain a hash. */
export interface ParsedHtpasswd {
  users: Map<string, string>;
  warnings: string[];
}

const USERNAME = /^[\p{L}\d@._-]+$/u;
const INVALID_USERNAME_TEXT =
  "in htpasswd, consists of characters other than letters, numbers, '_', '-', '.' and '@'";

/** Escapes control characters and caps the length so a username is safe to log. */
function printable(text: string): string {
  const capped = text.length > 64 ? `${text.slice(0, 64)}...` : text;
  return capped.replace(
    /[\p{Cc}"\\]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Parses htpasswd text; invalid lines are skipped with a warning, never thrown. */
export function parseHtpasswd(text: string): ParsedHtpasswd {
  const users = new Map<string, string>();
  const warnings: string[] = [];
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  lines.forEach((raw, index) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const lineNo = index + 1;
    if (line.trim() === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon < 0) {
      warnings.push(`Ignoring invalid line ${lineNo} in htpasswd: no ':' separator`);
      return;
    }
    const user = line.slice(0, colon).trimStart();
    const hash = line.slice(colon + 1).split(":")[0].trim();
    if (!USERNAME.test(user)) {
      warnings.push(
        `Ignoring invalid username "${printable(user)}" ${INVALID_USERNAME_TEXT} (line ${lineNo})`,
      );
      return;
    }
    users.set(user, hash);
  });
  return { users, warnings };
}

/** SHA-256 digest of a string (UTF-8) or bytes. */
function sha256(crypto: NodeCrypto, data: string | Uint8Array): Uint8Array {
  return crypto.createHash("sha256").update(data).digest();
}

/** Constant-time equality of two strings or byte arrays of any length (compares SHA-256 digests). */
export async function constantTimeEqual(
  a: string | Uint8Array,
  b: string | Uint8Array,
): Promise<boolean> {
  const crypto = await nodeCrypto();
  return crypto.timingSafeEqual(sha256(crypto, a), sha256(crypto, b));
}

const CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** crypt(3) base64: emits `count` characters of the 24-bit value b2:b1:b0, low bits first. */
function cryptB64(b2: number, b1: number, b0: number, count: number): string {
  let value = (b2 << 16) | (b1 << 8) | b0;
  let out = "";
  for (let i = 0; i < count; i++) {
    out += CRYPT_ALPHABET[value & 0x3f];
    value >>= 6;
  }
  return out;
}

/** Encodes a digest with a crypt byte-order table; each triple of indexes gives 4 characters. */
function encodeDigest(digest: Uint8Array, order: number[][], tail: [number[], number]): string {
  let out = "";
  for (const [a, b, c] of order) out += cryptB64(digest[a], digest[b], digest[c], 4);
  const [[a, b, c], count] = tail;
  const at = (i: number) => (i < 0 ? 0 : digest[i]);
  return out + cryptB64(at(a), at(b), at(c), count);
}

/** Repeats `block` cyclically until `length` bytes. */
function repeatTo(block: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = block[i % block.length];
  return out;
}

const utf8 = new TextEncoder();

const APR1_ORDER = [[0, 6, 12], [1, 7, 13], [2, 8, 14], [3, 9, 15], [4, 10, 5]];

/** Apache $apr1$ MD5 hash part (22 characters) for a password and salt. */
export async function apr1Digest(password: string, salt: string): Promise<string> {
  const { createHash } = await nodeCrypto();
  const md5 = () => createHash("md5");
  const pw = utf8.encode(password);
  const sl = utf8.encode(salt.slice(0, 8));
  const alt = md5().update(pw).update(sl).update(pw).digest();
  const ctx = md5().update(pw).update("$apr1$").update(sl);
  for (let left = pw.length; left > 0; left -= 16) ctx.update(alt.subarray(0, Math.min(left, 16)));
  for (let i = pw.length; i > 0; i >>= 1) ctx.update(i & 1 ? new Uint8Array(1) : pw.subarray(0, 1));
  let final: Uint8Array = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const round = md5().update(i & 1 ? pw : final);
    if (i % 3) round.update(sl);
    if (i % 7) round.update(pw);
    final = round.update(i & 1 ? final : pw).digest();
  }
  return encodeDigest(final, APR1_ORDER, [[-1, -1, 11], 2]);
}

const SHA256_ORDER = [
  [0, 10, 20],
  [21, 1, 11],
  [12, 22, 2],
  [3, 13, 23],
  [24, 4, 14],
  [15, 25, 5],
  [6, 16, 26],
  [27, 7, 17],
  [18, 28, 8],
  [9, 19, 29],
];
const SHA512_ORDER = [
  [0, 21, 42],
  [22, 43, 1],
  [44, 2, 23],
  [3, 24, 45],
  [25, 46, 4],
  [47, 5, 26],
  [6, 27, 48],
  [28, 49, 7],
  [50, 8, 29],
  [9, 30, 51],
  [31, 52, 10],
  [53, 11, 32],
  [12, 33, 54],
  [34, 55, 13],
  [56, 14, 35],
  [15, 36, 57],
  [37, 58, 16],
  [59, 17, 38],
  [18, 39, 60],
  [40, 61, 19],
  [62, 20, 41],
];

/** Rounds above this yield to the event loop between batches so a slow hash cannot stall I/O. */
const SHA_CRYPT_BATCH = 5000;

/** sha-crypt ($5$ / $6$, Drepper's published algorithm) hash part for password, salt, rounds. */
export async function shaCryptDigest(
  variant: "5" | "6",
  password: string,
  salt: string,
  rounds: number,
): Promise<string> {
  const algorithm = variant === "5" ? "sha256" : "sha512";
  const { createHash } = await nodeCrypto();
  const h = () => createHash(algorithm);
  const pw = utf8.encode(password);
  const sl = utf8.encode(salt).subarray(0, 16);
  const b = h().update(pw).update(sl).update(pw).digest();
  const actx = h().update(pw).update(sl);
  actx.update(repeatTo(b, pw.length));
  for (let i = pw.length; i > 0; i >>= 1) actx.update(i & 1 ? b : pw);
  const a: Uint8Array = actx.digest();
  const dpCtx = h();
  for (let i = 0; i < pw.length; i++) dpCtx.update(pw);
  const p = repeatTo(dpCtx.digest(), pw.length);
  const dsCtx = h();
  for (let i = 0; i < 16 + a[0]; i++) dsCtx.update(sl);
  const s = repeatTo(dsCtx.digest(), sl.length);
  let c = a;
  for (let i = 0; i < rounds; i++) {
    const ctx = h().update(i & 1 ? p : c);
    if (i % 3) ctx.update(s);
    if (i % 7) ctx.update(p);
    c = ctx.update(i & 1 ? c : p).digest();
    if ((i + 1) % SHA_CRYPT_BATCH === 0 && i + 1 < rounds) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  return variant === "5"
    ? encodeDigest(c, SHA256_ORDER, [[-1, 31, 30], 3])
    : encodeDigest(c, SHA512_ORDER, [[-1, -1, 63], 2]);
}

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
const APR1 = /^\$apr1\$([^$]*)\$([./0-9A-Za-z]{22})$/;
const SHA_CRYPT = /^\$([56])\$(?:rounds=(\d{1,12})\$)?([^$]*)\$([./0-9A-Za-z]+)$/;

/** Verifies a bcrypt hash by recomputing it with the stored salt. */
async function verifyBcrypt(hash: string, password: string): Promise<boolean> {
  // loaded on first use: most processes (stdio, ssh, --no-auth) never need it
  const bcrypt = (await import("bcryptjs")).default;
  const computed = await bcrypt.hash(password, hash.slice(0, 29));
  return await constantTimeEqual(computed, hash);
}

/** Verifies a $5$ / $6$ hash, clamping rounds to [1000, 999999999] like glibc. */
async function verifyShaCrypt(match: RegExpMatchArray, password: string): Promise<boolean> {
  const [, variant, roundsText, salt, stored] = match;
  const rounds = roundsText === undefined
    ? 5000
    : Math.min(999_999_999, Math.max(1000, Number(roundsText)));
  const computed = await shaCryptDigest(variant as "5" | "6", password, salt, rounds);
  return await constantTimeEqual(computed, stored);
}

/** Checks a password against one htpasswd hash; unknown or malformed formats give false. */
export async function verifyHash(hash: string, password: string): Promise<boolean> {
  try {
    if (BCRYPT.test(hash)) return await verifyBcrypt(hash, password);
    if (hash.startsWith("{SHA}")) {
      const computed = (await nodeCrypto()).createHash("sha1").update(password).digest("base64");
      return await constantTimeEqual(computed, hash.slice(5));
    }
    const apr1 = hash.match(APR1);
    if (apr1) return await constantTimeEqual(await apr1Digest(password, apr1[1]), apr1[2]);
    const shaCrypt = hash.match(SHA_CRYPT);
    if (shaCrypt) return await verifyShaCrypt(shaCrypt, password);
    return false;
  } catch {
    return false;
  }
}

/** Tunables of an HtpasswdFile; defaults follow the spec, tests shorten them. */
export interface HtpasswdOptions {
  /** Minimum time between two file checks by maybeReload (default 30 s). */
  reloadIntervalMs?: number;
  /** Lifetime of a cached successful verification (default 60 s). */
  cacheTtlMs?: number;
  /** Clock in milliseconds (default Date.now). */
  now?: () => number;
}

/** A short, path-free reason for a file system error. */
function reasonOf(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  return error instanceof Error ? error.message : String(error);
}

/** mtime and size of the file, used to detect changes. */
interface FileStamp {
  mtime: number;
  size: number;
}

/** Stats a file into a FileStamp. */
async function stampOf(path: string): Promise<FileStamp> {
  const info = await Deno.stat(path);
  return { mtime: info.mtime?.getTime() ?? 0, size: info.size };
}

/** Reads and parses the file; throws an Error whose message is a short reason. */
async function readTable(path: string): Promise<ParsedHtpasswd & { stamp: FileStamp }> {
  try {
    const stamp = await stampOf(path);
    const text = new TextDecoder().decode(await Deno.readFile(path));
    return { ...parseHtpasswd(text), stamp };
  } catch (error) {
    throw new Error(reasonOf(error));
  }
}

/** A cached successful verification: SHA-256 of user:password and its expiry time. */
interface CacheEntry {
  digest: Uint8Array;
  expires: number;
}

/** The user table of one htpasswd file, with the credential cache and reload logic. */
export class HtpasswdFile {
  readonly path: string;
  /** Counters for tests and diagnostics. */
  readonly stats = { hashChecks: 0, cacheHits: 0 };
  #log: LogFn;
  #users: Map<string, string>;
  #stamp: FileStamp;
  #cache = new Map<string, CacheEntry>();
  #generation = 0;
  #lastCheck: number;
  #reloadIntervalMs: number;
  #cacheTtlMs: number;
  #now: () => number;

  private constructor(
    path: string,
    log: LogFn,
    table: Map<string, string>,
    stamp: FileStamp,
    options: HtpasswdOptions,
  ) {
    this.path = path;
    this.#log = log;
    this.#users = table;
    this.#stamp = stamp;
    this.#reloadIntervalMs = options.reloadIntervalMs ?? 30_000;
    this.#cacheTtlMs = options.cacheTtlMs ?? 60_000;
    this.#now = options.now ?? Date.now;
    this.#lastCheck = this.#now();
  }

  /** Loads the file; throws an Error with a short reason if it is missing or unreadable. */
  static async load(
    path: string,
    log: LogFn,
    options: HtpasswdOptions = {},
  ): Promise<HtpasswdFile> {
    const { users, warnings, stamp } = await readTable(path);
    for (const warning of warnings) log(warning);
    log(`Loaded htpasswd file ${path}`);
    return new HtpasswdFile(path, log, users, stamp, options);
  }

  /** Number of users in the current table. */
  get userCount(): number {
    return this.#users.size;
  }

  /** Number of unexpired cache entries (expired ones are dropped). */
  get cacheSize(): number {
    this.#sweep();
    return this.#cache.size;
  }

  /** Re-reads the file unconditionally; on failure keeps the old table and returns false. */
  async reload(): Promise<boolean> {
    try {
      const { users, warnings, stamp } = await readTable(this.path);
      for (const warning of warnings) this.#log(warning);
      this.#users = users;
      this.#stamp = stamp;
      this.#cache.clear();
      this.#generation++;
      this.#log("Reloaded htpasswd file");
      return true;
    } catch (error) {
      this.#log(`Could not reload htpasswd file: ${reasonOf(error)}`);
      return false;
    }
  }

  /** At most once per interval, stats the file and reloads it if mtime or size changed. */
  async maybeReload(): Promise<boolean> {
    const now = this.#now();
    if (now - this.#lastCheck < this.#reloadIntervalMs) return false;
    this.#lastCheck = now;
    let stamp: FileStamp;
    try {
      stamp = await stampOf(this.path);
    } catch (error) {
      this.#log(`Could not reload htpasswd file: ${reasonOf(error)}`);
      return false;
    }
    if (stamp.mtime === this.#stamp.mtime && stamp.size === this.#stamp.size) return false;
    return await this.reload();
  }

  /** Checks user and password against the table, using and filling the credential cache. */
  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.#users.get(user);
    if (hash === undefined) return await this.#spendDummyTime(password);
    const crypto = await nodeCrypto();
    const digest = sha256(crypto, `${user}:${password}`);
    if (this.#cacheHit(crypto, user, digest)) return true;
    const generation = this.#generation;
    this.stats.hashChecks++;
    if (!(await verifyHash(hash, password))) {
      this.#log(`Invalid htpasswd entry for ${printable(user)}.`);
      return false;
    }
    if (generation === this.#generation) {
      this.#cache.set(user, { digest, expires: this.#now() + this.#cacheTtlMs });
    }
    return true;
  }

  /** True if an unexpired cache entry for the user holds this digest. */
  #cacheHit(crypto: NodeCrypto, user: string, digest: Uint8Array): boolean {
    const entry = this.#cache.get(user);
    if (entry === undefined) return false;
    if (this.#now() >= entry.expires) {
      this.#cache.delete(user);
      return false;
    }
    if (!crypto.timingSafeEqual(entry.digest, digest)) return false;
    this.stats.cacheHits++;
    return true;
  }

  /** Drops every expired cache entry. */
  #sweep(): void {
    const now = this.#now();
    for (const [user, entry] of this.#cache) if (now >= entry.expires) this.#cache.delete(user);
  }

  /** For unknown users: verifies against a real entry's hash so timing matches, then fails. */
  async #spendDummyTime(password: string): Promise<false> {
    const first = this.#users.values().next();
    if (!first.done) await verifyHash(first.value, password);
    return false;
  }
}
