// Sizes of restic's content-addressed files, remembered so that listing a repository (restic
// lists data/ at every backup, check and prune) costs one readdir per directory instead of one
// stat per file. Sound only while uploads are verified: a name is the SHA-256 of the content, so
// it always has the same size, whoever wrote, deleted or rewrote it meanwhile; the directory
// listing stays the source of truth for which objects exist. Bounded: at `max` entries it starts
// over (about 150 bytes per entry).

export class KnownSizes {
  readonly #sizes = new Map<string, number>();
  readonly #max: number;

  constructor(max = 250_000) {
    this.#max = max;
  }

  get(key: string): number | undefined {
    return this.#sizes.get(key);
  }

  set(key: string, size: number): void {
    if (this.#sizes.size >= this.#max && !this.#sizes.has(key)) this.#sizes.clear();
    this.#sizes.set(key, size);
  }

  delete(key: string): void {
    this.#sizes.delete(key);
  }

  get size(): number {
    return this.#sizes.size;
  }
}
