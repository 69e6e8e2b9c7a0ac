// In-process per-name locks for one store. Owns the short critical sections that must see a
// consistent item: "stat, then open" for loads (Content-Length matches the bytes sent) and
// "stat, decide, commit, account" for store, delete, move and defrag (exact quota deltas and
// overwrite decisions); and per directory, "create an upload in it" versus "remove it again
// after a failed upload". Bodies are streamed outside the locks; only decisions are serialised.

import type { Provider } from "../storage/provider.ts";
import { KeyLocks } from "./key_locks.ts";

const itemLocks = new WeakMap<Provider, KeyLocks>();
const directoryLocks = new WeakMap<Provider, KeyLocks>();

function tableFor(tables: WeakMap<Provider, KeyLocks>, provider: Provider): KeyLocks {
  let locks = tables.get(provider);
  if (locks === undefined) {
    locks = new KeyLocks();
    tables.set(provider, locks);
  }
  return locks;
}

/** The item lock table of the store served by `provider`. */
export function locksFor(provider: Provider): KeyLocks {
  return tableFor(itemLocks, provider);
}

/** Directory locks: taken around creating an upload in a directory and removing it again. */
export function directoryLocksFor(provider: Provider): KeyLocks {
  return tableFor(directoryLocks, provider);
}
