// What every BorgStore operation works on: the store (provider rooted at the store's base
// directory, permission map, quota) plus the checks shared by all operations: "store exists"
// (410) and provider errors re-worded with the item name (404 says which name is missing).

import { StowageError, toStowageError } from "../errors.ts";
import type { StoreQuota } from "../policy/borg_quota.ts";
import type { PermissionMap } from "../policy/permissions.ts";
import type { Provider, Stat } from "../storage/provider.ts";

export interface BorgStore {
  /** Rooted at the store: key "" is the store's base directory. */
  provider: Provider;
  permissions: PermissionMap;
  /** file: stores only; a BorgQuota without limit still removes a stale quota.hid. */
  quota: StoreQuota | null;
  /** Receives details of unexpected internal errors (default: console.error). */
  log?: (message: string) => void;
}

export const STORAGE_BASE = "[STORAGE_BASE]";

/** 410 unless the base directory exists; then opens the quota (first use). */
export async function requireStore(store: BorgStore): Promise<void> {
  const root = await store.provider.stat("");
  if (root === null || !root.isDirectory) {
    throw new StowageError(
      "StoreMissing",
      `posixfs storage base path does not exist or is not a directory: ${STORAGE_BASE}`,
    );
  }
  await store.quota?.open();
}

/** Rewords provider errors for `name`: NotFound carries the name, others say what happened. */
export function withName(error: unknown, name: string): StowageError {
  const e = toStowageError(error);
  switch (e.kind) {
    case "NotFound":
      return new StowageError("NotFound", name, { detail: e.detail, cause: e });
    case "IsDirectory":
      return new StowageError("IsDirectory", `is a directory: ${name}`, { detail: e.detail });
    case "NotDirectory":
      return new StowageError("NotDirectory", `not a directory: ${name}`, { detail: e.detail });
    case "NotEmpty":
      return new StowageError("NotEmpty", `directory not empty: ${name}`, { detail: e.detail });
    default:
      return e;
  }
}

/** Runs a provider call and rewords its errors for `name`. */
export async function onItem<T>(name: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw withName(error, name);
  }
}

/** Stat of an item that must exist and must not be a directory. */
export async function statItem(store: BorgStore, name: string): Promise<Stat> {
  const stat = await onItem(name, () => store.provider.stat(name));
  if (stat === null) throw new StowageError("NotFound", name);
  if (stat.isDirectory) throw new StowageError("IsDirectory", `is a directory: ${name}`);
  return stat;
}
