// The BorgStore operations that need no request body (spec §2.7): create, destroy, mkdir,
// rmdir, info, load, list, delete, move, hash, quota. Each one follows the reference's order of
// checks: store exists (410) → name (400) → permission (403) → existence (404) → I/O.

import { StowageError } from "../errors.ts";
import { checkPermission } from "../policy/permissions.ts";
import { readBody } from "../storage/provider.ts";
import {
  type BorgStore,
  onItem,
  requireStore,
  statItem,
  STORAGE_BASE,
  withName,
} from "./borgstore_context.ts";
import { checkAlgorithm, hashReadable } from "./borgstore_hash.ts";
import { locksFor } from "./borgstore_locks.ts";
import { isListableName, validateName } from "./borgstore_names.ts";
import { contentRange, resolveRange } from "./borgstore_range.ts";
import { bytesResponse, CACHE_CONTROL, okResponse, streamResponse } from "./borgstore_status.ts";

const encoder = new TextEncoder();

/** Seconds since the epoch as a decimal float (`X-BorgStore-Atime`, list `atime`). */
function seconds(ms: number): number {
  return ms / 1000;
}

export async function create(store: BorgStore): Promise<Response> {
  checkPermission(store.permissions, "", "wW");
  const root = await store.provider.stat("");
  if (root !== null && !root.isDirectory) {
    throw new StowageError(
      "NotDirectory",
      `posixfs storage base path is not a directory: ${STORAGE_BASE}`,
    );
  }
  await store.provider.mkdir("");
  for await (const _ of store.provider.list("")) {
    throw new StowageError("Conflict", `posixfs storage base path is not empty: ${STORAGE_BASE}`);
  }
  return okResponse();
}

export async function destroy(store: BorgStore): Promise<Response> {
  checkPermission(store.permissions, "", "D");
  const root = await store.provider.stat("");
  if (root === null || !root.isDirectory) {
    throw new StowageError(
      "StoreMissing",
      `posixfs storage base path does not exist: ${STORAGE_BASE}`,
    );
  }
  store.quota?.reset();
  try {
    await store.provider.removeTree("");
  } finally {
    store.quota?.reset();
  }
  return okResponse();
}

export async function mkdir(store: BorgStore, name: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "w");
  await onItem(name, () => store.provider.mkdir(name)).catch((error) => {
    // Deno reports "a file is in the way" as AlreadyExists.
    if (error instanceof StowageError && error.kind === "Exists") {
      throw new StowageError("NotDirectory", `not a directory: ${name}`);
    }
    throw error;
  });
  return okResponse();
}

export async function rmdir(store: BorgStore, name: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  if (name === "") {
    throw new StowageError("BadRequest", "rmdir of the store root is not allowed (use destroy)");
  }
  checkPermission(store.permissions, name, "wD");
  await onItem(name, () => store.provider.rmdir(name));
  return okResponse();
}

export async function info(store: BorgStore, name: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "lr");
  const stat = await onItem(name, () => store.provider.stat(name));
  if (stat === null) throw new StowageError("NotFound", name);
  return new Response(null, {
    status: 200,
    headers: {
      "cache-control": CACHE_CONTROL,
      "content-length": String(stat.size),
      "x-borgstore-is-directory": String(stat.isDirectory),
      "x-borgstore-atime": String(seconds(stat.atimeMs)),
    },
  });
}

export async function load(
  store: BorgStore,
  name: string,
  range: string | null,
): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "r");
  // Stat and open under the item's lock: no commit can swap the item in between, so the
  // Content-Length always matches the bytes of the opened file.
  return await locksFor(store.provider).run([name], async () => {
    const stat = await statItem(store, name);
    const resolved = resolveRange(range, stat.size);
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    const rangeHeader = contentRange(resolved, stat.size);
    if (rangeHeader !== null) headers["content-range"] = rangeHeader;
    if (resolved.length === 0) {
      return bytesResponse(resolved.status, "", { headers });
    }
    const byteRange = { offset: resolved.offset, length: resolved.length };
    const body = await onItem(
      name,
      () => readBody(store.provider, name, byteRange, resolved.length),
    );
    return streamResponse(resolved.status, body, resolved.length, headers);
  });
}

export async function list(store: BorgStore, name: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "l");
  const items: string[] = [];
  try {
    for await (const entry of store.provider.list(name)) {
      if (!isListableName(entry.name)) continue;
      items.push(JSON.stringify({
        name: entry.name,
        size: entry.size,
        directory: entry.isDirectory,
        atime: seconds(entry.atimeMs),
      }));
    }
  } catch (error) {
    throw withName(error, name);
  }
  return bytesResponse(200, encoder.encode(`[${items.join(", ")}]`), {
    contentType: "application/json",
  });
}

export async function deleteItem(store: BorgStore, name: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "D");
  await locksFor(store.provider).run([name], async () => {
    const removed = await onItem(name, () => store.provider.delete(name));
    if (removed === null) throw new StowageError("NotFound", name);
    await store.quota?.record(-removed);
  });
  return okResponse();
}

export async function move(
  store: BorgStore,
  current: string | null,
  next: string | null,
): Promise<Response> {
  if (current === null || next === null) {
    throw new StowageError("BadRequest", "Missing current or new name for move");
  }
  await requireStore(store);
  validateName(current);
  validateName(next);
  if (next.startsWith(`${current}/`)) {
    throw new StowageError("BadRequest", `cannot move ${current} into itself`);
  }
  checkPermission(store.permissions, current, "D");
  await locksFor(store.provider).run([current, next], async () => {
    const target = await onItem(next, () => store.provider.stat(next));
    checkPermission(store.permissions, next, target === null ? "wW" : "W");
    await onItem(current, () => store.provider.move(current, next, { replace: true }));
    // Beyond the reference: a replaced destination no longer counts towards the quota.
    if (target !== null && !target.isDirectory && current !== next) {
      await store.quota?.record(-target.size);
    }
  });
  return okResponse();
}

export async function hash(store: BorgStore, name: string, algorithm: string): Promise<Response> {
  await requireStore(store);
  validateName(name);
  checkPermission(store.permissions, name, "r");
  checkAlgorithm(algorithm);
  await statItem(store, name);
  const stream = await onItem(name, () => store.provider.read(name));
  const { hex } = await hashReadable(stream, algorithm);
  return bytesResponse(200, hex, { contentType: "text/plain" });
}

export async function quota(store: BorgStore): Promise<Response> {
  await requireStore(store);
  const limit = store.quota?.limit() ?? -1;
  const usage = store.quota === null ? -1 : await store.quota.usage();
  return bytesResponse(200, `{"limit": ${limit}, "usage": ${usage}}`, {
    contentType: "application/json",
  });
}
