// Byte quotas with reserve-then-commit accounting: an upload reserves its declared size before
// any byte is written, grows the reservation while streaming, and commits or releases it. The
// sum of usage and open reservations never exceeds the limit, however many uploads run at once.

import { StowageError } from "../errors.ts";
import type { QuotaReservation as StoreReservation, StoreQuota } from "./borg_quota.ts";

export class QuotaTracker {
  readonly limit: number;
  #used: number;
  #reserved = 0;

  constructor(limit: number, initialUsage: number) {
    this.limit = limit;
    this.#used = initialUsage;
  }

  /** Committed usage in bytes. */
  usage(): number {
    return this.#used;
  }

  /** Bytes currently held by uploads in flight. */
  reserved(): number {
    return this.#reserved;
  }

  #take(bytes: number): void {
    if (this.#used + this.#reserved + bytes > this.limit) {
      throw new StowageError(
        "QuotaExceeded",
        `Quota exceeded: ${this.#used + this.#reserved + bytes} > ${this.limit}`,
      );
    }
    this.#reserved += bytes;
  }

  /** Reserves `bytes` (may be 0 when the size is unknown); throws QuotaExceeded. */
  reserve(bytes: number): QuotaReservation {
    this.#take(bytes);
    return new QuotaReservation(this, bytes);
  }

  /** Records a change that needs no reservation (a delete is negative). */
  adjust(delta: number): void {
    this.#used = Math.max(0, this.#used + delta);
  }

  /** @internal used by QuotaReservation */
  grow(bytes: number): void {
    this.#take(bytes);
  }

  /** @internal used by QuotaReservation */
  settle(reservedBytes: number, committedBytes: number): void {
    this.#reserved -= reservedBytes;
    this.#used = Math.max(0, this.#used + committedBytes);
  }
}

/** Room held for one upload in one or more quotas. */
export interface Reservation {
  /** Makes sure at least `total` bytes are reserved; throws QuotaExceeded. */
  ensure(total: number): void;
  /** Turns the reservation into usage of `bytes` (the real size written, or a delta). */
  commit(bytes: number): void;
  /** Gives the reservation back. */
  release(): void;
}

/**
 * Reserves `bytes` in every tracker (global, per user, per repository) or in none: a refusal by
 * one gives back what the others granted. Returns null when no quota applies.
 */
export function reserveAll(trackers: QuotaTracker[], bytes: number): Reservation | null {
  if (trackers.length === 0) return null;
  const held: QuotaReservation[] = [];
  try {
    for (const tracker of trackers) held.push(tracker.reserve(bytes));
  } catch (error) {
    for (const r of held) r.release();
    throw error;
  }
  if (held.length === 1) return held[0];
  return {
    ensure: (total) => held.forEach((r) => r.ensure(total)),
    commit: (n) => held.forEach((r) => r.commit(n)),
    release: () => held.forEach((r) => r.release()),
  };
}

export class QuotaReservation implements Reservation {
  #held: number;
  #open = true;

  constructor(private readonly tracker: QuotaTracker, held: number) {
    this.#held = held;
  }

  /** Makes sure at least `total` bytes are reserved; throws QuotaExceeded. */
  ensure(total: number): void {
    if (!this.#open || total <= this.#held) return;
    this.tracker.grow(total - this.#held);
    this.#held = total;
  }

  /** Turns the reservation into usage of `bytes` (the real size written, or a delta). */
  commit(bytes: number): void {
    if (!this.#open) return;
    this.#open = false;
    this.tracker.settle(this.#held, bytes);
  }

  /** Gives the reservation back. */
  release(): void {
    if (!this.#open) return;
    this.#open = false;
    this.tracker.settle(this.#held, 0);
  }
}

/** A pass-through stream that grows a reservation as bytes flow; errors past the limit. */
export function quotaStream(reservation: Reservation): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      try {
        reservation.ensure(seen);
      } catch (error) {
        controller.error(error);
        return;
      }
      controller.enqueue(chunk);
    },
  });
}

/** Sums the lstat size of every entry below `root` (directories included), as rest-server. */
export async function measureTree(root: string): Promise<number> {
  let total = 0;
  const pending: string[] = [root];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      const info = await Deno.lstat(path);
      total += info.size;
      if (info.isDirectory) pending.push(path);
    }
  }
  return total;
}

const NO_RESERVATION: Reservation = { ensure() {}, commit() {}, release() {} };

/**
 * A borg store's view of the data directory's global quota (--max-size in multi-store mode):
 * store writes reserve and commit against the same tracker as restic uploads.
 */
export class SharedStoreQuota implements StoreQuota {
  /** The first tracker is the one `limit()` and `usage()` report (the tightest scope first). */
  constructor(private readonly trackers: QuotaTracker[]) {}

  limit(): number {
    return this.trackers[0]?.limit ?? -1;
  }

  usage(): Promise<number> {
    return Promise.resolve(this.trackers[0]?.usage() ?? -1);
  }

  open(): Promise<void> {
    return Promise.resolve();
  }

  reserve(delta: number): Promise<StoreReservation> {
    const held = reserveAll(this.trackers, Math.max(0, delta)) ?? NO_RESERVATION;
    let current = delta;
    return Promise.resolve({
      get delta() {
        return current;
      },
      resize(next: number) {
        if (next > 0) held.ensure(next);
        current = next;
      },
      commit() {
        held.commit(current);
        return Promise.resolve();
      },
      release() {
        held.release();
      },
    });
  }

  record(delta: number): Promise<void> {
    for (const tracker of this.trackers) tracker.adjust(delta);
    return Promise.resolve();
  }

  reset(): void {}

  persist(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
