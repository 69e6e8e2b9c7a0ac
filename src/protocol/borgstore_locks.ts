// In-process per-name locks for one store. Owns the short critical sections that must see a
// consistent item: "stat, then open" for loads (Content-Length matches the bytes sent) and
// "stat, decide, commit, account" for store, delete, move and defrag (exact quota deltas and
// overwrite decisions). Bodies are streamed outside the lock; only the decision is serialised.

import type { Provider } from "../storage/provider.ts";

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

const locksByProvider = new WeakMap<Provider, KeyLocks>();

/** The lock table of the store served by `provider`. */
export function locksFor(provider: Provider): KeyLocks {
  let locks = locksByProvider.get(provider);
  if (locks === undefined) {
    locks = new KeyLocks();
    locksByProvider.set(provider, locks);
  }
  return locks;
}
