// Keeps memory flat while large objects stream through. Every body chunk (a socket read, a file
// read) is a short-lived buffer whose bytes live outside the V8 heap, and V8 frees them only when
// it collects the young generation. Their small JS wrappers fill that generation slowly, so tens
// of MiB of dead buffers can pile up between collections. When the runtime exposes `gc` (the
// `--expose-gc` V8 flag, which the tasks and the compile script set), a minor collection is asked
// for after every BYTES_PER_COLLECTION bytes of object data moved; without the flag this does
// nothing. Storage providers report the bytes they write and read.

/** Object bytes moved between two minor collections. */
export const BYTES_PER_COLLECTION = 8 * 1024 * 1024;

/** V8's `gc` as `--expose-gc` exposes it (only the option used here). */
export type ExposedGc = (options: { type: "minor"; execution: "sync" }) => void;

/** Counts bytes moved and collects the young generation after every `bytesPerCollection`. */
export class CollectionPacer {
  #moved = 0;

  constructor(
    private readonly collect: ExposedGc | undefined,
    private readonly bytesPerCollection = BYTES_PER_COLLECTION,
  ) {}

  note(bytes: number): void {
    if (this.collect === undefined) return;
    this.#moved += bytes;
    if (this.#moved < this.bytesPerCollection) return;
    this.#moved = 0;
    this.collect({ type: "minor", execution: "sync" });
  }
}

const processPacer = new CollectionPacer((globalThis as { gc?: ExposedGc }).gc);

/** Reports `bytes` of object data streamed through short-lived buffers. */
export function noteBytesMoved(bytes: number): void {
  processPacer.note(bytes);
}
