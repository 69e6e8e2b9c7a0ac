// Listing order for the S3 provider. S3 lists keys in UTF-8 byte order, so a directory "a"
// (common prefix "a/") comes after the files "a-b" and "a.b" ('-' and '.' sort before '/'),
// while the provider contract orders by name, which puts "a" first. NameOrder re-sorts a
// streamed listing with a small hold-back buffer: an entry is released once no entry still to
// come can sort before it, which only a directory whose name is a prefix of the entry's name,
// followed by a character below '/', can do.

import { compareNames } from "./provider.ts";

const SLASH = 0x2f;

/**
 * True when nothing listed after `current` (a key-order position: a file name, or a directory
 * name plus "/") can sort before `name`.
 */
export function isSettled(name: string, current: string): boolean {
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) < SLASH) {
      // The latest directory that could still precede `name` is name[0, i) + "/".
      return compareNames(current, `${name.slice(0, i)}/`) >= 0;
    }
  }
  return true;
}

/** Re-sorts entries arriving in S3 key order into name order, releasing them as early as safe. */
export class NameOrder<T extends { name: string }> {
  readonly #pending: T[] = [];

  /**
   * Adds an entry; `position` is its place in key order (the name, or the name plus "/" for a
   * directory). Returns the entries that can be handed out now, in name order.
   */
  push(entry: T, position: string): T[] {
    const pending = this.#pending;
    let at = pending.length;
    while (at > 0 && compareNames(pending[at - 1].name, entry.name) > 0) at--;
    pending.splice(at, 0, entry);
    let ready = 0;
    while (ready < pending.length && isSettled(pending[ready].name, position)) ready++;
    return ready === 0 ? [] : pending.splice(0, ready);
  }

  /** Everything still held back (the listing ended). */
  flush(): T[] {
    return this.#pending.splice(0, this.#pending.length);
  }
}
