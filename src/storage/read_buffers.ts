// Reusable buffers for object reads of 64–256 KiB answered in one piece. A fresh buffer of that
// size costs an allocation, zeroing and page faults on first touch (about 24 µs for 256 KiB
// here, a tenth of the server's CPU per 256 KiB range answer). Buffers go back only through
// `returnReadBuffer` from a writer that has finished with them, and only buffers this module lent
// are taken back; a buffer nobody returns is ordinary garbage.

/** Reads up to this size allocate as usual (cheap at a few KiB). */
const POOL_FROM = 64 * 1024 + 1;
/** Capacity classes: the smallest that fits is lent. */
const CLASSES = [128 * 1024, 256 * 1024, 512 * 1024];
/** Free buffers kept per class. */
const KEEP = 8;

const free = new Map<number, ArrayBuffer[]>(CLASSES.map((size) => [size, []]));
const lent = new WeakSet<ArrayBuffer>();

/** A buffer of `length` bytes, pooled when the length is in the pooled range. */
export function takeReadBuffer(length: number): Uint8Array<ArrayBuffer> {
  const size = length >= POOL_FROM ? CLASSES.find((capacity) => capacity >= length) : undefined;
  if (size === undefined) return new Uint8Array(length);
  const buffer = free.get(size)!.pop() ?? new ArrayBuffer(size);
  lent.add(buffer);
  return new Uint8Array(buffer, 0, length);
}

/**
 * Gives back a buffer (or a view of one) from `takeReadBuffer` once nothing refers to it any
 * more; anything else is ignored, and so is a second return of the same buffer.
 */
export function returnReadBuffer(bytes: Uint8Array): void {
  const buffer = bytes.buffer;
  if (!(buffer instanceof ArrayBuffer) || !lent.has(buffer)) return;
  lent.delete(buffer);
  const list = free.get(buffer.byteLength);
  if (list !== undefined && list.length < KEEP) list.push(buffer);
}
