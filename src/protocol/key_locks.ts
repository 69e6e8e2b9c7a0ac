// In-process per-key locks: a queue of critical sections per key, for the short "decide, then
// act" steps that must see a consistent object while bodies stream outside the lock.

export class KeyLocks {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` while holding the locks of all `keys` (taken in sorted order: no deadlock). */
  async run<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const unique = [...new Set(keys)].sort();
    const releases: (() => void)[] = [];
    try {
      for (const key of unique) releases.push(await this.#acquire(key));
      return await fn();
    } finally {
      for (const release of releases) release();
    }
  }

  async #acquire(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => held);
    this.#tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}
