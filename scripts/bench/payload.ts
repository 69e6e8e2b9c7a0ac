// Bench payloads without holding them all in memory: an object set is one random base buffer
// whose first 8 bytes are replaced per object (set tag + index), so every object differs and its
// ID (SHA-256 of the exact bytes, the restic rule) is computed once per bench invocation. Also
// the streamed single large object and the generated file tree for `restic backup`.

import { createHash } from "node:crypto";
import { writeAll } from "../../src/transport/node_bridge.ts";

const PREFIX = 8;

/** Fills `bytes` with random data (getRandomValues takes 64 KiB at most per call). */
export function fillRandom<T extends Uint8Array>(bytes: T): T {
  for (let at = 0; at < bytes.byteLength; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(at + 65536, bytes.byteLength)));
  }
  return bytes;
}

export function sha256Hex(...parts: Uint8Array[]): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest("hex");
}

function prefix(tag: number, index: number): Uint8Array {
  const bytes = new Uint8Array(PREFIX);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x5354_4f00 | (tag & 0xff)); // "STO" + tag
  view.setUint32(4, index);
  return bytes;
}

/** `count` objects of `size` bytes (size ≥ 8) sharing one random base. */
export class ObjectSet {
  readonly ids: string[];
  readonly #base: Uint8Array<ArrayBuffer>;

  constructor(readonly tag: number, readonly count: number, readonly size: number) {
    if (size < PREFIX) throw new Error("object size must be at least 8 bytes");
    this.#base = fillRandom(new Uint8Array(size));
    const rest = this.#base.subarray(PREFIX);
    this.ids = Array.from({ length: count }, (_, i) => sha256Hex(prefix(tag, i), rest));
  }

  /** A private copy of the base to be filled per object with `fill` (one per upload loop). */
  scratch(): Uint8Array<ArrayBuffer> {
    return this.#base.slice();
  }

  /** Turns a scratch buffer into object `index` (in place) and returns it. */
  fill(scratch: Uint8Array<ArrayBuffer>, index: number): Uint8Array<ArrayBuffer> {
    scratch.set(prefix(this.tag, index), 0);
    return scratch;
  }
}

/** One object of `size` bytes streamed as 16 MiB chunks; the ID is computed up front. */
export class StreamedObject {
  readonly id: string;
  readonly #chunk: Uint8Array;

  constructor(
    readonly tag: number,
    readonly size: number,
    chunkSize = 16 * 1024 * 1024,
    /** Copy the content (and ID) of this object instead of generating and hashing new bytes. */
    from?: StreamedObject,
  ) {
    if (from !== undefined) {
      this.#chunk = from.#chunk.slice();
      this.id = from.id;
      return;
    }
    this.#chunk = fillRandom(new Uint8Array(Math.min(chunkSize, size)));
    const hash = createHash("sha256");
    for (const chunk of this.chunks()) hash.update(chunk);
    this.id = hash.digest("hex");
  }

  /** The same content with a chunk buffer of its own, for streams that run concurrently. */
  copy(): StreamedObject {
    return new StreamedObject(this.tag, this.size, this.#chunk.byteLength, this);
  }

  /** The content; every yielded chunk is reused (overwritten) by the next one. */
  *chunks(): Generator<Uint8Array> {
    let index = 0;
    for (let at = 0; at < this.size; at += this.#chunk.byteLength, index++) {
      const length = Math.min(this.#chunk.byteLength, this.size - at);
      const chunk = this.#chunk.subarray(0, length);
      if (length >= PREFIX) chunk.set(prefix(this.tag, index), 0);
      yield chunk;
    }
  }
}

export interface TreeSpec {
  largeFiles: number;
  largeSize: number;
  mediumFiles: number;
  mediumSize: number;
  smallFiles: number;
  smallSize: number;
}

export function treeBytes(spec: TreeSpec): number {
  return spec.largeFiles * spec.largeSize + spec.mediumFiles * spec.mediumSize +
    spec.smallFiles * spec.smallSize;
}

/** Writes a tree of random (incompressible, non-deduplicating) files below `dir`. */
export async function writeTree(dir: string, spec: TreeSpec): Promise<void> {
  const buffer = new Uint8Array(4 * 1024 * 1024);
  const writeFile = async (path: string, size: number) => {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      for (let left = size; left > 0;) {
        const part = fillRandom(buffer.subarray(0, Math.min(left, buffer.byteLength)));
        await writeAll(file, part);
        left -= part.byteLength;
      }
    } finally {
      file.close();
    }
  };
  await Deno.mkdir(`${dir}/large`, { recursive: true });
  for (let i = 0; i < spec.largeFiles; i++) {
    await writeFile(`${dir}/large/file-${i}.bin`, spec.largeSize);
  }
  const groups = (n: number) => Math.max(1, Math.ceil(n / 64));
  for (let i = 0; i < spec.mediumFiles; i++) {
    const sub = `${dir}/medium/d${i % groups(spec.mediumFiles)}`;
    if (i < groups(spec.mediumFiles)) await Deno.mkdir(sub, { recursive: true });
    await writeFile(`${sub}/m${i}.dat`, spec.mediumSize);
  }
  for (let i = 0; i < spec.smallFiles; i++) {
    const sub = `${dir}/small/d${i % groups(spec.smallFiles)}`;
    if (i < groups(spec.smallFiles)) await Deno.mkdir(sub, { recursive: true });
    await writeFile(`${sub}/s${i}.txt`, spec.smallSize);
  }
}

/** Deterministic PRNG (mulberry32) for range offsets: both servers get the same plan. */
export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
