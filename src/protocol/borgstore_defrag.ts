// BorgStore `defrag` (spec §2.7 defrag): server-side concatenation of byte ranges of existing
// items into a new item. Owns: strict parsing of the parameters and of the JSON body (anything
// malformed → 400), the reference's permission pre-checks (`W` on the target or on
// `<namespace>/01234567`, `r` on namespace-prefixed sources), the 416 for ranges that do not
// yield exactly the requested bytes, computed target names (digest, namespace, nesting levels)
// and the streamed write of the concatenation with the normal store rules.

import { StowageError } from "../errors.ts";
import { checkPermission } from "../policy/permissions.ts";
import type { Stat } from "../storage/provider.ts";
import { readSmallBody } from "./borgstore_body.ts";
import { type BorgStore, onItem, requireStore, statItem } from "./borgstore_context.ts";
import { checkAlgorithm, createHasher, type Hasher } from "./borgstore_hash.ts";
import { validateName } from "./borgstore_names.ts";
import { bytesResponse } from "./borgstore_status.ts";
import {
  beginWrite,
  commitWrite,
  overwriteForbidden,
  sameContent,
  writeMode,
} from "./borgstore_write.ts";

/** Largest accepted defrag request body. */
export const MAX_DEFRAG_BODY = 16 * 1024 * 1024;
/** Deepest nesting accepted for computed names (borg uses 1). */
export const MAX_DEFRAG_LEVELS = 16;

export interface DefragSource {
  name: string;
  /** As requested; negative counts from the end. */
  offset: number;
  size: number;
}

interface PlannedSource extends DefragSource {
  /** Absolute start offset in the item. */
  start: number;
}

export interface DefragParams {
  target: string | null;
  algorithm: string | null;
  namespace: string | null;
  levels: string | null;
}

function badRequest(message: string): StowageError {
  return new StowageError("BadRequest", message);
}

/** Parses `levels`: an integer (negative means none), at most MAX_DEFRAG_LEVELS. */
export function parseLevels(value: string | null): number {
  if (value === null) return 0;
  if (!/^-?\d+$/.test(value)) throw badRequest(`Invalid levels for defrag: ${value}`);
  const levels = Number(value);
  if (levels > MAX_DEFRAG_LEVELS) {
    throw badRequest(`Invalid levels for defrag: ${value} (max: ${MAX_DEFRAG_LEVELS})`);
  }
  return Math.max(levels, 0);
}

/** Parses the body: a JSON array of `[name, offset, size]` with integer offset and size ≥ 0. */
export function parseSources(body: Uint8Array): DefragSource[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (error) {
    throw badRequest(`Invalid JSON body for defrag: ${(error as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw badRequest("defrag body must be a JSON array");
  return parsed.map((element, index) => {
    if (
      !Array.isArray(element) || element.length !== 3 || typeof element[0] !== "string" ||
      !Number.isSafeInteger(element[1]) || !Number.isSafeInteger(element[2]) || element[2] < 0
    ) {
      throw badRequest(
        `defrag source ${index} must be [name, offset, size] with integer offset and size >= 0`,
      );
    }
    return { name: element[0], offset: element[1], size: element[2] };
  });
}

/** `<namespace>/<name>` (namespace without trailing slashes), or just the name. */
function inNamespace(namespace: string, name: string): string {
  return namespace === "" ? name : `${namespace}/${name}`;
}

/** The computed target: `<ns>/<d[0:2]>/…/<digest>` with `levels` nesting directories. */
export function nestedName(namespace: string, digest: string, levels: number): string {
  const parts: string[] = [];
  for (let level = 0; level < levels; level++) parts.push(digest.slice(2 * level, 2 * level + 2));
  parts.push(digest);
  return inNamespace(namespace, parts.join("/"));
}

function rangeError(source: DefragSource, got: number): StowageError {
  return new StowageError(
    "BadRange",
    `Read range error from ${source.name} (requested ${source.size} bytes at offset ${source.offset}, got ${got})`,
  );
}

/** Checks `r` and existence of each source and that each range yields exactly its size. */
async function planSources(store: BorgStore, sources: DefragSource[]): Promise<PlannedSource[]> {
  const planned: PlannedSource[] = [];
  for (const source of sources) {
    checkPermission(store.permissions, source.name, "r");
    const stat = await statItem(store, source.name);
    const start = source.offset < 0 ? stat.size + source.offset : source.offset;
    const got = start < 0 ? 0 : Math.max(Math.min(source.size, stat.size - start), 0);
    if (got !== source.size) throw rangeError(source, got);
    planned.push({ ...source, start });
  }
  return planned;
}

/** Streams the concatenation of all ranges into `sink`; any short read is a 416. */
async function copySources(
  store: BorgStore,
  sources: PlannedSource[],
  sink: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  for (const source of sources) {
    const stream = await onItem(
      source.name,
      () => store.provider.read(source.name, { offset: source.start, length: source.size }),
    );
    let got = 0;
    for await (const chunk of stream) {
      got += chunk.byteLength;
      await sink(chunk);
    }
    if (got !== source.size) throw rangeError(source, got);
  }
}

/** Hashes the concatenation with each of the given hashers. */
async function hashSources(store: BorgStore, sources: PlannedSource[], hashers: Hasher[]) {
  await copySources(store, sources, (chunk) => {
    for (const hasher of hashers) hasher.update(chunk);
    return Promise.resolve();
  });
}

export async function defrag(
  request: Request,
  store: BorgStore,
  params: DefragParams,
): Promise<Response> {
  if (params.target === null && params.algorithm === null) {
    throw badRequest("Missing target or algorithm for defrag");
  }
  await requireStore(store);
  const levels = parseLevels(params.levels);
  const namespace = (params.namespace ?? "").replace(/\/+$/, "");
  if (params.target === null) checkAlgorithm(params.algorithm!);
  const sources = parseSources(await readSmallBody(request, MAX_DEFRAG_BODY));
  if (params.target !== null) validateName(params.target);
  for (const source of sources) validateName(source.name);

  // Reference pre-checks (spec §6.4): W on the target (even a new one), r on prefixed sources.
  checkPermission(store.permissions, params.target ?? inNamespace(namespace, "01234567"), "W");
  for (const source of sources) {
    checkPermission(store.permissions, inNamespace(namespace, source.name), "r");
  }

  const planned = await planSources(store, sources);
  const total = planned.reduce((sum, source) => sum + source.size, 0);
  let target = params.target;
  let expectedDigest: string | null = null;
  if (target === null) {
    const naming = await createHasher(params.algorithm!);
    await hashSources(store, planned, [naming]);
    expectedDigest = naming.hex();
    target = validateName(nestedName(namespace, expectedDigest, levels));
  }

  const existing: Stat | null = await onItem(target, () => store.provider.stat(target));
  const mode = writeMode(store, target, existing);
  if (mode === "compare") {
    const sha256 = await createHasher("sha256");
    await hashSources(store, planned, [sha256]);
    if (!(await sameContent(store, target, existing!.size, total, sha256.hex()))) {
      throw overwriteForbidden(target);
    }
    return bytesResponse(200, target, { contentType: "text/plain" });
  }

  const name = target;
  const reservation = store.quota === null
    ? null
    : await store.quota.reserve(total - (existing?.size ?? 0));
  const write = await beginWrite(store, name, total).catch((error) => {
    reservation?.release();
    throw error;
  });
  const sha256 = await createHasher("sha256");
  const naming = expectedDigest === null ? null : await createHasher(params.algorithm!);
  try {
    const writer = write.upload.writable.getWriter();
    await copySources(store, planned, async (chunk) => {
      sha256.update(chunk);
      naming?.update(chunk);
      await writer.write(chunk);
    });
    await writer.close();
    if (naming !== null && naming.hex() !== expectedDigest) {
      throw new StowageError("Internal", "defrag sources changed while being read");
    }
  } catch (error) {
    await write.discard();
    reservation?.release();
    throw error;
  }
  await commitWrite(store, { name, write, size: total, sha256: sha256.hex(), reservation });
  return bytesResponse(200, name, { contentType: "text/plain" });
}
