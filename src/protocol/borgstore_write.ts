// The rules for writing an item, shared by store and defrag (spec §2.7 store, §6.4, §7.3).
// Owns: which permission a write needs (new item: `w` or `W`; existing item: `W`), the
// idempotent retry (an existing item with byte-identical content is accepted where only `w` is
// granted, without writing), and the final commit: under the item's lock re-check existence,
// settle the quota delta against the size actually replaced, then commit atomically.

import { StowageError, toStowageError } from "../errors.ts";
import type { QuotaReservation } from "../policy/borg_quota.ts";
import { checkPermission, isPermitted } from "../policy/permissions.ts";
import { parentKey, type Stat, type Upload } from "../storage/provider.ts";
import { type BorgStore, onItem } from "./borgstore_context.ts";
import { hashReadable } from "./borgstore_hash.ts";
import { directoryLocksFor, locksFor } from "./borgstore_locks.ts";

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
  const overwrite = isPermitted(store.permissions, name, "W");
  if (!overwrite && !isPermitted(store.permissions, name, "w")) throw overwriteForbidden(name);
  if (existing.isDirectory) throw new StowageError("IsDirectory", `is a directory: ${name}`);
  return overwrite ? "overwrite" : "compare";
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

/** An upload in progress; discard() removes it and the directories it had to create. */
export interface StartedWrite {
  readonly upload: Upload;
  discard(): Promise<void>;
}

/**
 * Begins an upload for `name`. Parent directories missing before are remembered so that a
 * failed write (truncated body, hash mismatch, quota) leaves no empty directories behind. The
 * parent's directory lock keeps a cleanup from removing a directory another upload is entering.
 */
export async function beginWrite(
  store: BorgStore,
  name: string,
  sizeHint?: number,
): Promise<StartedWrite> {
  const parent = parentKey(name);
  const directoryLocks = directoryLocksFor(store.provider);
  const missing: string[] = [];
  const upload = await directoryLocks.run([parent], async () => {
    for (let dir = parent; dir !== ""; dir = parentKey(dir)) {
      if (await onItem(dir, () => store.provider.stat(dir)) !== null) break;
      missing.push(dir);
    }
    return await onItem(name, () => store.provider.begin(name, { sizeHint }));
  });
  let discarded = false;
  return {
    upload,
    async discard() {
      await upload.abort();
      if (discarded || missing.length === 0) return;
      discarded = true;
      await directoryLocks.run([parent], async () => {
        for (const dir of missing) {
          try {
            await store.provider.rmdir(dir);
          } catch {
            return; // not empty (another upload uses it) or already gone
          }
        }
      });
    },
  };
}

export interface PendingWrite {
  name: string;
  write: StartedWrite;
  /** Bytes written to the upload. */
  size: number;
  /** Lowercase hex sha256 of the written bytes. */
  sha256: string;
  reservation: QuotaReservation | null;
}

/**
 * Makes a finished upload visible. Under the item's lock: re-stat, re-decide the write mode,
 * accept an identical existing item without writing, settle the quota delta (507), commit
 * (replacing only with `W`) and account. On failure the upload is discarded and the
 * reservation released.
 */
export async function commitWrite(store: BorgStore, pending: PendingWrite): Promise<void> {
  const { name, write, reservation } = pending;
  try {
    await locksFor(store.provider).run([name], async () => {
      const existing = await onItem(name, () => store.provider.stat(name));
      const mode = writeMode(store, name, existing);
      if (mode === "compare") {
        if (await sameContent(store, name, existing!.size, pending.size, pending.sha256)) {
          await write.discard();
          reservation?.release();
          return;
        }
        throw overwriteForbidden(name);
      }
      reservation?.resize(pending.size - (existing?.size ?? 0));
      try {
        await write.upload.commit({ replace: mode === "overwrite" });
      } catch (error) {
        // Only another process can have created the item since the stat above.
        if (toStowageError(error).kind === "Exists") throw overwriteForbidden(name);
        throw error;
      }
      await reservation?.commit();
    });
  } catch (error) {
    await write.discard();
    reservation?.release();
    throw error;
  }
}
