// The storage provider contract: a small streaming key/value interface with directories.
// Keys are relative, slash-separated and already validated (storage/keys.ts); "" is the root.
// Every implementation keeps the same semantics: uploads are invisible until commit, commits are
// atomic and durable, a no-replace commit fails with kind "Exists" when the key is taken.

import { StowageError } from "../errors.ts";

export interface Stat {
  size: number;
  isDirectory: boolean;
  /** Last access time in milliseconds since the epoch (0 when unknown). */
  atimeMs: number;
  /** Last modification time in milliseconds since the epoch (0 when unknown). */
  mtimeMs: number;
}

export interface Entry extends Stat {
  /** One path segment. */
  name: string;
}

/** A directory entry without metadata (cheaper than Entry on file systems). */
export interface NameEntry {
  name: string;
  isDirectory: boolean;
}

/** An absolute byte range inside an object: `length` bytes starting at `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface BeginOptions {
  /** Create missing parent directories (default true). */
  createParents?: boolean;
  /** Expected size, when known; lets providers pick a strategy. */
  sizeHint?: number;
}

export interface Upload {
  /** Where the body goes. Closing it does not commit. */
  readonly writable: WritableStream<Uint8Array>;
  /** Bytes accepted by `writable` so far. */
  written(): number;
  /** Makes the object visible, durably and atomically. `replace: false` fails with "Exists". */
  commit(options: { replace: boolean }): Promise<void>;
  /** Discards the upload; leaves nothing behind. Safe to call more than once or after commit. */
  abort(): Promise<void>;
}

export interface Provider {
  /** A short description for logs (never sent to clients). */
  readonly description: string;
  stat(key: string): Promise<Stat | null>;
  /** One directory level, sorted by name (byte order), internal temp entries skipped. */
  list(dir: string): AsyncIterable<Entry>;
  /**
   * Optional: one directory level as names only, sorted like `list`, same entries. Providers for
   * which sizes cost a call per entry (file systems) offer it; callers that know sizes otherwise
   * (restic's content-addressed objects) skip those calls.
   */
  listNames?(dir: string): Promise<NameEntry[]>;
  /** Reads an object, or a range of it. Throws NotFound / IsDirectory. */
  read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>>;
  /**
   * Optional: like `read`, into one buffer. For reads the caller knows are small (see
   * `readBody`): for a few KiB, a stream costs more than the bytes. `expected` is the length the
   * caller resolved from its own stat of `key` just before (the range clamped to the size); a
   * provider may then skip describing the object again, but must return a different length
   * when the object no longer gives that many bytes (or, without a range, more).
   */
  readBytes?(key: string, range?: ByteRange, expected?: number): Promise<Uint8Array<ArrayBuffer>>;
  begin(key: string, options?: BeginOptions): Promise<Upload>;
  /** Removes an object. Returns the removed size, or null when it did not exist. */
  delete(key: string): Promise<number | null>;
  /** Renames an object, creating the destination's parents. `replace: false` fails with "Exists". */
  move(from: string, to: string, options: { replace: boolean }): Promise<void>;
  /** Creates a directory and its parents; an existing directory is fine. */
  mkdir(dir: string): Promise<void>;
  /** Removes an empty directory. */
  rmdir(dir: string): Promise<void>;
  /** Removes a directory and everything below it. */
  removeTree(dir: string): Promise<void>;
}

/** Reads up to this size use the provider's `readBytes` when it has one. */
export const SMALL_READ_LIMIT = 256 * 1024;

/** Writes bytes already in memory to an upload's writable in one write, and closes it. */
export async function writeBytes(
  writable: WritableStream<Uint8Array>,
  bytes: Uint8Array,
): Promise<void> {
  const writer = writable.getWriter();
  await writer.write(bytes);
  await writer.close();
}

/** A stream of one chunk (none for an empty one), for bytes already in memory. */
export function oneChunkStream(chunk: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (chunk.byteLength > 0) controller.enqueue(chunk);
      controller.close();
    },
  });
}

/**
 * Held bodies (src/http/held_body.ts) of up to this size go into the Response as a copy for
 * consumers other than stowage's HTTP/1.1 listeners, larger ones as a stream of the buffer itself.
 * `new Response(bytes)` copies the bytes (the Fetch standard extracts a copy), which costs nothing
 * at a few KiB and lets Deno's server send them without a stream (4 KiB GETs: 23 000/s against
 * 18 000/s as a stream); from about a hundred KiB the copy and its garbage dominate (256 KiB
 * ranged GETs on the node:http listener: 610 MiB/s as a copied buffer, 890–970 MiB/s as a stream
 * of the read buffer itself).
 */
export const BYTES_BODY_LIMIT = 64 * 1024;

/**
 * The body for a read of `length` bytes the caller resolved from a stat. When the provider offers
 * `readBytes` and the read is at most SMALL_READ_LIMIT, it is read in one piece and returned as
 * that buffer (the caller holds it beside its Response). Larger reads, and providers without
 * `readBytes`, stream. A piece that is not `length` bytes long (the object
 * changed between stat and read) is an error, never a short answer.
 */
export async function readBody(
  provider: Provider,
  key: string,
  range: ByteRange | undefined,
  length: number,
): Promise<Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>> {
  if (length > SMALL_READ_LIMIT || provider.readBytes === undefined) {
    return await provider.read(key, range);
  }
  const bytes = await provider.readBytes(key, range, length);
  if (bytes.byteLength !== length) {
    throw new StowageError("Internal", "object changed while being read", {
      detail: `${key}: read ${bytes.byteLength} bytes, expected ${length}`,
    });
  }
  return bytes;
}

/** Orders names by Unicode code point, which is UTF-8 byte order (as S3 and borgstore list). */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** UTF-16 units re-ranked so surrogates (code points above U+FFFF) sort after U+E000–U+FFFF. */
function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

export function parentKey(key: string): string {
  const i = key.lastIndexOf("/");
  return i < 0 ? "" : key.slice(0, i);
}

export function baseName(key: string): string {
  const i = key.lastIndexOf("/");
  return i < 0 ? key : key.slice(i + 1);
}
