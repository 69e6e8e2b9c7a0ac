// A cheap "nothing is there" answer for the file system provider's stat. Deno.lstatSync of a
// missing path throws, and building that NotFound error costs about 12 µs; node:fs existsSync is
// one access(F_OK) call that returns false without an error object (about 1.3 µs). Every upload
// asks first whether its name is taken, and the answer is nearly always no.
//
// node:fs is loaded only when asked to (`prepareAbsentCheck`, called by an upload, which loads
// Deno's node compatibility layer for its hash anyway): a process that only reads does not pay
// for it at start-up. Until it is loaded, `surelyAbsent` says false and callers take the lstat.

let existsSync: ((path: string) => boolean) | null = null;
let loading: Promise<void> | null = null;

/** Starts loading the check (once); resolves when it is ready or could not be loaded. */
export function prepareAbsentCheck(): Promise<void> {
  loading ??= import("node:fs").then(
    (fs) => {
      existsSync = fs.existsSync;
    },
    () => {
      // without node:fs every stat takes the lstat path
    },
  );
  return loading;
}

/**
 * True when nothing the system can reach is at `path`: no entry, a symlink whose target does not
 * exist (or loops), or a parent the process may not search. False when something is there or the
 * check is not loaded yet; the caller then looks with lstat.
 */
export function surelyAbsent(path: string): boolean {
  return existsSync !== null && !existsSync(path);
}
