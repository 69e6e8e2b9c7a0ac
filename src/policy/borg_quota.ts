// BorgStore quota accounting (borgstore spec §7), compatible with the reference's `quota.hid`.
// Owns: the `quota.hid` file in a store's base directory (ASCII decimal usage, no newline), the
// scan that recomputes usage, the delta-merge persist rule under an exclusive file lock (so
// several processes, including Python servers, can share one store), and exact in-process
// limit enforcement with reserve-then-commit. Quota is `file:`-only, so this works on the root
// directory of an FsProvider. Without a limit it only removes a stale `quota.hid` on first use.

import { StowageError } from "../errors.ts";
import { TEMP_MARKER } from "../storage/keys.ts";

export const QUOTA_FILE = "quota.hid";
/** Persist when the unpersisted change reaches this many bytes (reference constant). */
export const QUOTA_PERSIST_DELTA = 10_000_000;
/** Persist at the latest this long after the first unpersisted change (reference: 300 s). */
export const QUOTA_PERSIST_INTERVAL_MS = 300_000;

const MAX_QUOTA_FILE_BYTES = 100;
const LOCK_RETRIES = 20;

export interface BorgQuotaOptions {
  persistDelta?: number;
  persistIntervalMs?: number;
}

/** Room reserved for one write; committed with its final delta or released. */
export interface QuotaReservation {
  /** The delta currently reserved (bytes; negative for shrinking overwrites). */
  readonly delta: number;
  /** Changes the reserved delta; growing it past the limit throws QuotaExceeded. */
  resize(delta: number): void;
  /** Adds the reserved delta to the usage (after the write became visible). */
  commit(): Promise<void>;
  /** Gives the room back without changing the usage. Safe after commit. */
  release(): void;
}

function parseUsage(text: string): number | null {
  const trimmed = text.trim();
  if (!/^[+-]?\d+$/.test(trimmed)) return null;
  const value = Number(trimmed);
  return Number.isSafeInteger(value) ? value : null;
}

/** Total size of regular files below `dir`, not following symlinks, without `quota.hid`. */
export async function scanUsage(root: string): Promise<number> {
  let total = 0;
  const pending = [root];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        pending.push(path);
      } else if (entry.isFile && !(dir === root && entry.name === QUOTA_FILE)) {
        try {
          total += (await Deno.lstat(path)).size;
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
      }
    }
  }
  return total;
}

/** What the BorgStore protocol needs of a quota: BorgQuota (quota.hid) or a shared tracker. */
export interface StoreQuota {
  /** The limit in bytes, or -1 without quota. */
  limit(): number;
  /** Committed usage in bytes, or -1 without quota. */
  usage(): Promise<number>;
  /** Loads state on first use (store base directory exists). */
  open(): Promise<void>;
  /** Reserves room for a write changing the usage by `delta`; throws QuotaExceeded. */
  reserve(delta: number): Promise<QuotaReservation>;
  /** Records a change that needs no reservation (delete). */
  record(delta: number): Promise<void>;
  /** Forgets state after the store was destroyed. */
  reset(): void;
  /** Writes outstanding changes where they are kept (quota.hid); a no-op for shared trackers. */
  persist(): Promise<void>;
  /** Persists outstanding changes. */
  close(): Promise<void>;
}

export class BorgQuota implements StoreQuota {
  readonly root: string;
  readonly #limit: number | null;
  readonly #persistDelta: number;
  readonly #persistIntervalMs: number;
  /** Usage on disk when last read or written by this process. */
  #base = 0;
  /** Committed changes not yet merged into the file. */
  #unpersisted = 0;
  /** Sum of the positive parts of all outstanding reservations. */
  #reserved = 0;
  #open = false;
  /** Bumped by reset() (destroy): older reservations then commit nothing. */
  #generation = 0;
  #opening: Promise<void> | null = null;
  /** Serialises every access to the quota file within this process. */
  #fileQueue: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | null = null;

  /** `limit` null = no quota: usage is not tracked and `quota.hid` is removed on first use. */
  constructor(root: string, limit: number | null, options: BorgQuotaOptions = {}) {
    if (limit !== null && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new Error(`Invalid quota: ${limit}`);
    }
    this.root = root.replace(/\/+$/, "") || "/";
    this.#limit = limit;
    this.#persistDelta = options.persistDelta ?? QUOTA_PERSIST_DELTA;
    this.#persistIntervalMs = options.persistIntervalMs ?? QUOTA_PERSIST_INTERVAL_MS;
  }

  get path(): string {
    return `${this.root}/${QUOTA_FILE}`;
  }

  /** The configured limit in bytes, or -1 without quota. */
  limit(): number {
    return this.#limit ?? -1;
  }

  /** Current usage in bytes (committed writes only), or -1 without quota. */
  async usage(): Promise<number> {
    if (this.#limit === null) return -1;
    await this.open();
    return this.#current();
  }

  #current(): number {
    return Math.max(this.#base + this.#unpersisted, 0);
  }

  /**
   * Loads the usage once per store life (first use after start or after reset): reads
   * `quota.hid`, or scans when it is missing or unparsable and writes the result. Without a
   * limit it deletes `quota.hid` instead. The store's base directory must exist.
   */
  open(): Promise<void> {
    if (this.#open) return Promise.resolve();
    if (this.#opening === null) {
      const generation = this.#generation;
      this.#opening = this.#load().then(() => {
        if (generation === this.#generation) this.#open = true;
      }).finally(() => {
        this.#opening = null;
      });
    }
    return this.#opening;
  }

  #load(): Promise<void> {
    if (this.#limit === null) {
      return this.#exclusive(() =>
        Deno.remove(this.path).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        })
      );
    }
    return this.#exclusive(() =>
      this.#withLockedFile(async (file) => {
        let value = file === null ? null : parseUsage(await this.#readFile(file));
        if (value === null) {
          value = await scanUsage(this.root);
          await this.#writeFile(value);
        }
        this.#base = value;
        this.#unpersisted = 0;
      })
    );
  }

  /**
   * Reserves room for a write of `delta` bytes (new size − old size). Throws QuotaExceeded
   * `Quota exceeded: <usage+delta> > <limit>` when committed usage plus all outstanding
   * reservations plus `delta` would pass the limit; equality passes.
   */
  async reserve(delta: number): Promise<QuotaReservation> {
    await this.open();
    const tracked = this.#limit !== null;
    const generation = this.#generation;
    if (tracked) this.#check(delta, 0);
    let current = delta;
    let done = false;
    if (tracked) this.#reserved += Math.max(current, 0);
    const finish = (): boolean => {
      if (done) return false;
      done = true;
      if (tracked) this.#reserved -= Math.max(current, 0);
      return true;
    };
    return {
      get delta() {
        return current;
      },
      resize: (next: number) => {
        if (done) throw new StowageError("Internal", "quota reservation already finished");
        if (tracked) {
          if (next > current) this.#check(next, Math.max(current, 0));
          this.#reserved += Math.max(next, 0) - Math.max(current, 0);
        }
        current = next;
      },
      commit: async () => {
        const committed = current;
        if (!finish() || !tracked || generation !== this.#generation) return;
        await this.#apply(committed);
      },
      release: () => {
        finish();
      },
    };
  }

  /** Throws QuotaExceeded when `delta` does not fit beside the other reservations. */
  #check(delta: number, ownReserved: number): void {
    const limit = this.#limit!;
    const wanted = this.#current() + (this.#reserved - ownReserved) + delta;
    if (wanted > limit) {
      throw new StowageError("QuotaExceeded", `Quota exceeded: ${wanted} > ${limit}`);
    }
  }

  /** Records a change that needs no reservation (delete, replaced move destination). */
  async record(delta: number): Promise<void> {
    if (this.#limit === null || delta === 0) return;
    await this.open();
    await this.#apply(delta);
  }

  async #apply(delta: number): Promise<void> {
    this.#unpersisted += delta;
    if (Math.abs(this.#unpersisted) >= this.#persistDelta) {
      // The write itself succeeded; a failed persist is retried by the next one.
      await this.persist().catch((error) => console.error(`quota persist failed: ${error}`));
    } else if (this.#timer === null && this.#unpersisted !== 0) {
      const timer = setTimeout(() => {
        this.#timer = null;
        this.persist().catch((error) => console.error(`quota persist failed: ${error}`));
      }, this.#persistIntervalMs);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /**
   * Merges the unpersisted change into `quota.hid` under the exclusive lock:
   * writes max(on-disk value + unpersisted change, 0), or a fresh scan when the file is
   * missing or unparsable. Other processes' changes thereby become part of the usage.
   */
  persist(): Promise<void> {
    this.#clearTimer();
    if (this.#limit === null || !this.#open) return Promise.resolve();
    const generation = this.#generation;
    return this.#exclusive(() =>
      this.#withLockedFile(async (file) => {
        if (generation !== this.#generation || !this.#open) return;
        const delta = this.#unpersisted;
        const onDisk = file === null ? null : parseUsage(await this.#readFile(file));
        const value = onDisk === null ? await scanUsage(this.root) : Math.max(onDisk + delta, 0);
        await this.#writeFile(value);
        this.#base = value;
        this.#unpersisted -= delta;
      })
    );
  }

  /** Forgets all state (after the store was destroyed); the next use opens afresh. */
  reset(): void {
    this.#clearTimer();
    this.#generation++;
    this.#open = false;
    this.#base = 0;
    this.#unpersisted = 0;
  }

  /** Persists outstanding changes and stops the persist timer. */
  async close(): Promise<void> {
    if (this.#unpersisted !== 0) await this.persist();
    this.#clearTimer();
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#fileQueue.then(fn, fn);
    this.#fileQueue = run.catch(() => {});
    return run;
  }

  /**
   * Runs `fn` with `quota.hid` opened and exclusively locked, or with null when the file does
   * not exist. Writers replace the file by rename, so after acquiring the lock the inode is
   * compared with the path's: a replaced file is re-opened and locked again.
   */
  async #withLockedFile<T>(fn: (file: Deno.FsFile | null) => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < LOCK_RETRIES; attempt++) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(this.path, { read: true, write: true });
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return await fn(null);
        throw error;
      }
      try {
        await file.lock(true);
        const locked = await file.stat();
        let current: Deno.FileInfo | null = null;
        try {
          current = await Deno.stat(this.path);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
        if (current === null || current.ino !== locked.ino || current.dev !== locked.dev) continue;
        return await fn(file);
      } finally {
        file.close();
      }
    }
    throw new StowageError("Internal", "quota file keeps changing", {
      detail: `could not lock ${this.path}`,
    });
  }

  async #readFile(file: Deno.FsFile): Promise<string> {
    const buffer = new Uint8Array(MAX_QUOTA_FILE_BYTES);
    await file.seek(0, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < buffer.byteLength) {
      const n = await file.read(buffer.subarray(filled));
      if (n === null || n === 0) break;
      filled += n;
    }
    return new TextDecoder().decode(buffer.subarray(0, filled));
  }

  /** Replaces `quota.hid` atomically: temp file, fsync, rename, directory fsync. */
  async #writeFile(value: number): Promise<void> {
    const random = crypto.getRandomValues(new Uint32Array(2));
    // Hidden from both listings: FsProvider skips TEMP_MARKER, borg name rules skip `.tmp`.
    const temp = `${this.root}/${QUOTA_FILE}.${random[0].toString(36)}${
      random[1].toString(36)
    }${TEMP_MARKER}.tmp`;
    const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    try {
      const data = new TextEncoder().encode(String(value));
      let at = 0;
      while (at < data.byteLength) at += await file.write(data.subarray(at));
      await file.syncData();
    } catch (error) {
      file.close();
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
    file.close();
    try {
      await Deno.rename(temp, this.path);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
    await syncDirectory(this.root);
  }
}

async function syncDirectory(path: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let dir: Deno.FsFile | null = null;
  try {
    dir = await Deno.open(path, { read: true });
    await dir.sync();
  } catch {
    // directory fsync is best effort (not supported everywhere)
  } finally {
    dir?.close();
  }
}
