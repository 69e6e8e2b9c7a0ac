// The rules for writing an item, shared by store and defrag (spec §2.7 store, §6.4, §7.3).
// Owns: which permission a write needs (new item: `w` or `W`; existing item: `W`), the
// idempotent retry (an existing item with byte-identical content is accepted where only `w` is
// granted, without writing), and the final commit: under the item's lock re-check existence,
// settle the quota delta against the size actually replaced, then commit atomically.

import { StowageError, toStowageError } from "../errors.ts";
import type { QuotaReservation } from "../policy/borg_quota.ts";
import { checkPermission, isPermitted } from "../policy/permissions.ts";
import type { Stat, Upload } from "../storage/provider.ts";
import { type BorgStore, onItem } from "./borgstore_context.ts";
import { hashReadable } from "./borgstore_hash.ts";
import { locksFor } from "./borgstore_locks.ts";

/**
 * How a write may proceed: "new" (item absent), "overwrite" (`W` granted) or "compare"
 * (item exists, only `w` granted: succeeds only when the content is identical).
 */
export type WriteMode = "new" | "overwrite" | "compare";

/** Decides the write mode or throws Forbidden / IsDirectory. */
export function writeMode(store: BorgStore, name: string, existing: Stat | null): WriteMode {
  if (existing === null) {
    checkPermission(store.permissions, name, "wW");
    return isPermitted(store.permissions, name, "W") ? "overwrite" : "new";
  }
  if (!isPermitted(store.permissions, name, "W") && !isPermitted(store.permissions, name, "w")) {
    checkPermission(store.permissions, name, "W");
  }
  if (existing.isDirectory) throw new StowageError("IsDirectory", `is a directory: ${name}`);
  return isPermitted(store.permissions, name, "W") ? "overwrite" : "compare";
}

export function overwriteForbidden(name: string): StowageError {
  return new StowageError("Forbidden", `One of permissions 'W' required for '${name}'`);
}

/** True when the stored item has exactly `size` bytes with this sha256. */
export async function sameContent(
  store: BorgStore,
  name: string,
  storedSize: number,
  size: number,
  sha256: string,
): Promise<boolean> {
  if (storedSize !== size) return false;
  const stream = await onItem(name, () => store.provider.read(name));
  return (await hashReadable(stream, "sha256")).hex === sha256;
}

export interface PendingWrite {
  name: string;
  upload: Upload;
  /** Bytes written to the upload. */
  size: number;
  /** Lowercase hex sha256 of the written bytes. */
  sha256: string;
  reservation: QuotaReservation | null;
}

/**
 * Makes a finished upload visible. Under the item's lock: re-stat, re-decide the write mode,
 * accept an identical existing item without writing, settle the quota delta (507), commit
 * (replacing only with `W`) and account. On failure the upload is aborted and the reservation
 * released.
 */
export async function commitWrite(store: BorgStore, pending: PendingWrite): Promise<void> {
  const { name, upload, reservation } = pending;
  try {
    await locksFor(store.provider).run([name], async () => {
      const existing = await onItem(name, () => store.provider.stat(name));
      const mode = writeMode(store, name, existing);
      if (mode === "compare") {
        if (await sameContent(store, name, existing!.size, pending.size, pending.sha256)) {
          await upload.abort();
          reservation?.release();
          return;
        }
        throw overwriteForbidden(name);
      }
      reservation?.resize(pending.size - (existing?.size ?? 0));
      try {
        await upload.commit({ replace: mode === "overwrite" });
      } catch (error) {
        // Only another process can have created the item since the stat above.
        if (toStowageError(error).kind === "Exists") throw overwriteForbidden(name);
        throw error;
      }
      await reservation?.commit();
    });
  } catch (error) {
    await upload.abort();
    reservation?.release();
    throw error;
  }
}
