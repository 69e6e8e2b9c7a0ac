// The restic REST protocol (v1 and v2) as rest-server 0.14 speaks it: the request pipeline
// (canonical path, auth, folder, private repos, routing, policy), and every operation mapped to
// the storage provider. Status codes come from restic_response.ts; nothing here touches disk.

import { KnownSizes } from "./restic_sizes.ts";
import { StowageError, toStowageError } from "../errors.ts";
import { bodyResponse, readWholeBody, WHOLE_BODY_LIMIT } from "../http/held_body.ts";
import type { Logger } from "../log.ts";
import type { AccessPolicy } from "../policy/access.ts";
import { checkPermission, type PermissionMap } from "../policy/permissions.ts";
import { quotaStream, type QuotaTracker, type Reservation, reserveAll } from "../policy/quota.ts";
import { unsafeKeyReason } from "../storage/keys.ts";
import { type Provider, readBody, type Upload, writeBytes } from "../storage/provider.ts";
import { KeyLocks } from "./key_locks.ts";
import { digestingStream, hashBytes, hashStream } from "../stream/digest.ts";
import { countingStream, jsonArrayStream } from "../stream/json.ts";
import { parseRange, type ResolvedRange } from "./http_range.ts";
import {
  allowedMethods,
  objectKey,
  parseResticPath,
  repoRelativeKey,
  RESTIC_TYPES,
  type ResticType,
  routeRemainder,
} from "./restic_path.ts";
import {
  REASONS,
  RESTIC_STATUS,
  resticError,
  resticOk,
  sniffContentType,
} from "./restic_response.ts";

export const RESTIC_V2 = "application/vnd.x.restic.rest.v2";
export const RESTIC_V1 = "application/vnd.x.restic.rest.v1";

export type BlobOperation = "read" | "write" | "delete";

/** Where blob counters go (Prometheus); labels as rest-server. */
export interface ResticMetrics {
  blob(
    op: BlobOperation,
    labels: { user: string; repo: string; type: string },
    bytes: number,
  ): void;
}

export interface ResticOptions {
  provider: Provider;
  /** Returns the user name ("" when auth is off) or null when the request is not authenticated. */
  authenticate: (request: Request) => Promise<string | null>;
  policy: AccessPolicy;
  verifyUpload: boolean;
  quota: QuotaTracker | null;
  metrics: ResticMetrics | null;
  /** Refuses repositories that belong to another protocol (throws Conflict). */
  guard?: (repoKey: string) => Promise<void>;
  log: Logger;
}

interface Call {
  request: Request;
  method: string;
  user: string;
  repo: string[];
  repoKey: string;
  permissions: PermissionMap;
  /** Every quota this upload counts against: global, per user, per repository. */
  quotas: QuotaTracker[];
}

const CONFIG_INLINE_LIMIT = 64 * 1024;

/**
 * The restic REST protocol over one provider. Answers may hold their body beside them
 * (src/http/held_body.ts): hand them on through `forTransport` or `withHeldBody`.
 */
export function createResticHandler(
  options: ResticOptions,
): (request: Request) => Promise<Response> {
  const { provider, log } = options;
  /** Sizes of stored objects, for listings without a stat per file (see restic_sizes.ts). */
  const sizes = options.verifyUpload && provider.listNames !== undefined ? new KnownSizes() : null;
  /**
   * Per object: "commit or compare, then account" of a POST and "delete, then account" of a
   * DELETE run one at a time, so a POST that finds the ID taken compares against an object no
   * DELETE can remove halfway. Bodies stream outside the lock.
   */
  const objectLocks = new KeyLocks();

  async function handle(request: Request): Promise<Response> {
    const method = request.method;
    const url = new URL(request.url);
    const parsed = parseResticPath(url.pathname, url.search);
    if (parsed.kind === "redirect") return redirect(parsed.location, method);

    const user = await options.authenticate(request);
    if (user === null) return resticError(401, method);

    if (parsed.kind === "invalid") {
      log.debug(`Invalid request path: ${url.pathname}`);
      return resticError(404, method);
    }
    const access = options.policy.resolve(user, parsed.folder, "restic");
    if (access === null) return resticError(401, method);

    const route = routeRemainder(parsed.remainder);
    if (route.kind === "unknown") return resticError(404, method);
    const allowed = allowedMethods(route);
    if (!allowed.includes(method)) {
      return resticError(405, method, { headers: { allow: allowed.join(", ") } });
    }
    const repoKey = parsed.folder.join("/");
    if (unsafeKeyReason(repoKey) !== null) {
      log.debug(`Invalid request path: ${url.pathname}`);
      return resticError(404, method);
    }
    const call: Call = {
      request,
      method,
      user,
      repo: parsed.folder,
      repoKey,
      permissions: access.permissions,
      quotas: [...(options.quota ? [options.quota] : []), ...(access.quotas ?? [])],
    };
    try {
      await options.guard?.(repoKey);
      switch (route.kind) {
        case "repo":
          return await createRepository(call, url);
        case "config":
          return await configOperation(call);
        case "list":
          return await listType(call, route.type);
        case "object":
          return await objectOperation(call, route.type, route.id);
      }
    } catch (error) {
      return errorResponse(error, method);
    }
  }

  function errorResponse(error: unknown, method: string): Response {
    const e = toStowageError(error);
    const status = RESTIC_STATUS[e.kind];
    if (status >= 500) log.error(`ERROR: ${e.detail ?? e.message}`);
    else log.debug(`${status} ${e.message}${e.detail ? ` (${e.detail})` : ""}`);
    return resticError(status, method);
  }

  function key(call: Call, relative: string): string {
    return call.repoKey === "" ? relative : `${call.repoKey}/${relative}`;
  }

  async function createRepository(call: Call, url: URL): Promise<Response> {
    if (url.searchParams.get("create") !== "true") return resticError(400, call.method);
    checkPermission(call.permissions, "", "wW");
    log.info(`Creating repository directories in /${call.repoKey}`);
    await provider.mkdir(call.repoKey);
    for (const type of RESTIC_TYPES) await provider.mkdir(key(call, type));
    for (let i = 0; i < 256; i++) {
      await provider.mkdir(key(call, `data/${i.toString(16).padStart(2, "0")}`));
    }
    return resticOk();
  }

  async function configOperation(call: Call): Promise<Response> {
    const configKey = key(call, "config");
    switch (call.method) {
      case "HEAD": {
        checkPermission(call.permissions, "config", "lr");
        const stat = await provider.stat(configKey);
        if (stat === null || stat.isDirectory) return resticError(404, "HEAD");
        return new Response(null, {
          status: 200,
          headers: { "content-length": String(stat.size) },
        });
      }
      case "GET":
        checkPermission(call.permissions, "config", "r");
        return await readConfig(configKey);
      case "POST":
        checkPermission(call.permissions, "config", "wW");
        return await writeConfig(call, configKey);
      default: // DELETE
        checkPermission(call.permissions, "config", "D");
        {
          const removed = await provider.delete(configKey);
          if (removed !== null) { for (const quota of call.quotas) quota.adjust(-removed); }
        }
        return resticOk();
    }
  }

  async function readConfig(configKey: string): Promise<Response> {
    const stat = await provider.stat(configKey);
    if (stat === null || stat.isDirectory) return resticError(404, "GET");
    const stream = await provider.read(configKey);
    const headers = new Headers({ "content-length": String(stat.size) });
    if (stat.size <= CONFIG_INLINE_LIMIT) {
      const body = new Uint8Array(await new Response(stream).arrayBuffer());
      const type = sniffContentType(body);
      if (type !== null) headers.set("content-type", type);
      headers.set("content-length", String(body.byteLength));
      return new Response(body, { status: 200, headers });
    }
    headers.set("content-type", "application/octet-stream");
    return new Response(stream, { status: 200, headers });
  }

  /**
   * Config is created once, written through a temp file like objects (a truncated upload leaves
   * nothing) and, unlike rest-server, counted against the quotas so it is no way around them.
   */
  async function writeConfig(call: Call, configKey: string): Promise<Response> {
    if (await provider.stat(configKey) !== null) return resticError(403, "POST");
    const reservation = reserveAll(call.quotas, declaredLength(call.request) ?? 0);
    let upload;
    try {
      upload = await provider.begin(configKey, { createParents: false });
    } catch (error) {
      reservation?.release();
      const e = toStowageError(error);
      // rest-server: POST config into a repository that was never created is a 500.
      if (e.kind === "NotFound") {
        throw new StowageError("Internal", "repository missing", { detail: `no /${call.repoKey}` });
      }
      throw e;
    }
    try {
      let body = call.request.body ?? emptyStream();
      if (reservation) body = body.pipeThrough(quotaStream(reservation));
      await body.pipeTo(upload.writable);
      await upload.commit({ replace: false });
    } catch (error) {
      await upload.abort();
      reservation?.release();
      throw bodyError(error, true);
    }
    reservation?.commit(upload.written());
    return resticOk();
  }

  async function listType(call: Call, type: ResticType): Promise<Response> {
    checkPermission(call.permissions, type, "l");
    const typeKey = key(call, type);
    const stat = await provider.stat(typeKey);
    if (stat === null) return resticError(404, "GET");
    if (!stat.isDirectory) throw new StowageError("NotDirectory", "not a directory");
    const v2 = call.request.headers.get("accept") === RESTIC_V2;
    const items = type === "data" ? listDataEntries(typeKey, v2) : listEntries(typeKey, v2);
    return new Response(jsonArrayStream(items), {
      status: 200,
      headers: { "content-type": v2 ? RESTIC_V2 : RESTIC_V1 },
    });
  }

  /** One directory's listing, in batches (v1: names; v2: names and sizes). */
  async function* listEntries(dir: string, v2: boolean): AsyncIterable<unknown[]> {
    if (!v2 && provider.listNames !== undefined) {
      yield (await provider.listNames(dir)).map((entry) => entry.name);
      return;
    }
    if (v2 && sizes !== null) {
      const known = await knownEntries(dir, sizes);
      if (known !== null) {
        yield known;
        return;
      }
    }
    let batch: unknown[] = [];
    for await (const entry of provider.list(dir)) {
      if (sizes !== null && !entry.isDirectory) sizes.set(`${dir}/${entry.name}`, entry.size);
      batch.push(v2 ? { name: entry.name, size: entry.size } : entry.name);
      if (batch.length >= 1000) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  /** A v2 listing from names and known sizes; null when a size is unknown or a directory is in. */
  async function knownEntries(
    dir: string,
    known: KnownSizes,
  ): Promise<{ name: string; size: number }[] | null> {
    const entries: { name: string; size: number }[] = [];
    for (const { name, isDirectory } of await provider.listNames!(dir)) {
      const size = isDirectory ? undefined : known.get(`${dir}/${name}`);
      if (size === undefined) return null;
      entries.push({ name, size });
    }
    return entries;
  }

  async function* listDataEntries(dir: string, v2: boolean): AsyncIterable<unknown[]> {
    const subs = provider.listNames !== undefined
      ? await provider.listNames(dir)
      : provider.list(dir);
    for await (const sub of subs) {
      if (!sub.isDirectory) continue; // stray files directly in data/ are skipped
      try {
        yield* listEntries(`${dir}/${sub.name}`, v2);
      } catch (error) {
        if (toStowageError(error).kind !== "NotFound") throw error; // vanished meanwhile
      }
    }
  }

  async function objectOperation(call: Call, type: ResticType, id: string): Promise<Response> {
    const relative = repoRelativeKey(type, id);
    const objectPath = objectKey(call.repoKey, type, id);
    const labels = { user: call.user, repo: call.repo.join("/"), type };
    switch (call.method) {
      case "HEAD": {
        checkPermission(call.permissions, relative, "lr");
        const stat = await provider.stat(objectPath);
        if (stat === null || stat.isDirectory) return resticError(404, "HEAD");
        return new Response(null, {
          status: 200,
          headers: { "content-length": String(stat.size) },
        });
      }
      case "GET":
        checkPermission(call.permissions, relative, "r");
        return await readObject(call, objectPath, labels);
      case "POST":
        checkPermission(call.permissions, relative, "wW");
        return await writeObject(call, objectPath, id, labels);
      default: { // DELETE
        checkPermission(call.permissions, relative, "D");
        await objectLocks.run([objectPath], async () => {
          const removed = await provider.delete(objectPath);
          sizes?.delete(objectPath);
          if (removed !== null) {
            for (const quota of call.quotas) quota.adjust(-removed);
            options.metrics?.blob("delete", labels, removed);
          }
        });
        return resticOk();
      }
    }
  }

  async function readObject(
    call: Call,
    objectPath: string,
    labels: { user: string; repo: string; type: string },
  ): Promise<Response> {
    const stat = await provider.stat(objectPath);
    if (stat === null || stat.isDirectory) return resticError(404, "GET");
    const headers = call.request.headers;
    const record = (bytes: number) => options.metrics?.blob("read", labels, bytes);
    // Counting the bytes sent costs a stream stage per response: only when metrics are on.
    // A body read into one buffer is counted as it is handed over.
    const countedStream = (stream: ReadableStream<Uint8Array>) =>
      options.metrics ? countingStream(stream, record) : stream;
    const counted = (body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>) => {
      if (!(body instanceof Uint8Array)) return countedStream(body);
      if (options.metrics) record(body.byteLength);
      return body;
    };
    if (headers.get("if-none-match") === "*") {
      record(0);
      return new Response(null, { status: 304 });
    }
    if (headers.has("if-match")) {
      record(0);
      return new Response(null, { status: 412, headers: { "content-length": "0" } });
    }
    const size = stat.size;
    const rangeHeader = headers.has("if-range") || size === 0 ? null : headers.get("range");
    const range = parseRange(rangeHeader, size);
    const baseHeaders = {
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
    };
    switch (range.kind) {
      case "full": {
        const body = counted(await readBody(provider, objectPath, undefined, size));
        return bodyResponse(body, {
          status: 200,
          headers: { ...baseHeaders, "content-length": String(size) },
        });
      }
      case "unsatisfiable": {
        const text = "invalid range: failed to overlap";
        record(text.length + 1);
        return resticError(416, "GET", { text, headers: { "content-range": `bytes */${size}` } });
      }
      case "invalid":
        record("invalid range\n".length);
        return resticError(416, "GET", { text: "invalid range" });
    }
    if (range.ranges.length === 1) {
      const r = range.ranges[0];
      const byteRange = { offset: r.start, length: r.length };
      const body = counted(await readBody(provider, objectPath, byteRange, r.length));
      return bodyResponse(body, {
        status: 206,
        headers: {
          ...baseHeaders,
          "content-length": String(r.length),
          "content-range": `bytes ${r.start}-${r.start + r.length - 1}/${size}`,
        },
      });
    }
    return multipartResponse(objectPath, range.ranges, size, countedStream);
  }

  function multipartResponse(
    objectPath: string,
    ranges: ResolvedRange[],
    size: number,
    counted: (stream: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>,
  ): Response {
    const boundary = Array.from(crypto.getRandomValues(new Uint8Array(15)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const encoder = new TextEncoder();
    const heads = ranges.map((r, i) =>
      encoder.encode(
        `${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Range: bytes ${r.start}-${
          r.start + r.length - 1
        }/${size}\r\nContent-Type: application/octet-stream\r\n\r\n`,
      )
    );
    const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
    const length = heads.reduce((n, h) => n + h.byteLength, 0) +
      ranges.reduce((n, r) => n + r.length, 0) + tail.byteLength;
    async function* parts(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < ranges.length; i++) {
        yield heads[i];
        const stream = await provider.read(objectPath, {
          offset: ranges[i].start,
          length: ranges[i].length,
        });
        yield* stream;
      }
      yield tail;
    }
    const body = counted(ReadableStream.from(parts()));
    return new Response(body, {
      status: 206,
      headers: {
        "accept-ranges": "bytes",
        "content-type": `multipart/byteranges; boundary=${boundary}`,
        "content-length": String(length),
      },
    });
  }

  async function writeObject(
    call: Call,
    objectPath: string,
    id: string,
    labels: { user: string; repo: string; type: string },
  ): Promise<Response> {
    const body = call.request.body ?? emptyStream();
    // An existing ID is never overwritten. With verification, a retry whose bytes equal the
    // stored object succeeds (a reply lost on the way, also in append-only mode); anything else
    // gets rest-server's 403. The retry is streamed into a temp file like any upload, so a
    // concurrent DELETE of the stored object cannot lose it.
    const existedAtStart = await provider.stat(objectPath) !== null;
    if (existedAtStart && !options.verifyUpload) {
      await body.cancel().catch(() => {});
      return resticError(403, "POST");
    }
    const declared = declaredLength(call.request);
    const reservation: Reservation | null = reserveAll(call.quotas, declared ?? 0);
    const upload = await provider.begin(objectPath, {
      sizeHint: declared ?? undefined,
    }).catch((error) => {
      reservation?.release();
      throw error;
    });
    const discard = async () => {
      await upload.abort();
      reservation?.release();
    };
    try {
      const whole = readWholeBody(call.request, WHOLE_BODY_LIMIT);
      const hex = whole === null
        ? await streamInto(upload, body, reservation)
        : await bytesInto(upload, await whole, reservation);
      if (hex !== null && hex !== id) {
        throw existedAtStart
          ? new StowageError("Exists", "an object with this ID exists")
          : new StowageError("HashMismatch", "content does not match its ID");
      }
    } catch (error) {
      await discard();
      throw bodyError(error, false);
    }
    return await objectLocks.run([objectPath], async () => {
      try {
        if (existedAtStart) {
          const same = await storedMatches(objectPath, id);
          if (same !== null) {
            await discard();
            return same ? resticOk() : resticError(403, "POST");
          }
          // deleted meanwhile: store this verified copy instead
        }
        await upload.commit({ replace: false });
      } catch (error) {
        await discard();
        const e = toStowageError(error);
        if (e.kind !== "Exists" || !options.verifyUpload) throw e;
        // An upload of the same ID committed while this body streamed: compare with it. No
        // DELETE here can remove it meanwhile; only a writer outside this process could.
        const same = await storedMatches(objectPath, id);
        if (same === null) throw new StowageError("Unavailable", "object changed meanwhile");
        return same ? resticOk() : resticError(403, "POST");
      }
      const written = upload.written();
      reservation?.commit(written);
      sizes?.set(objectPath, written);
      options.metrics?.blob("write", labels, written);
      return resticOk();
    });
  }

  /** Streams `body` into `upload` (hashed when verifying, counted against the quota). */
  async function streamInto(
    upload: Upload,
    body: ReadableStream<Uint8Array>,
    reservation: Reservation | null,
  ): Promise<string | null> {
    const digest = options.verifyUpload ? await digestingStream("sha256") : null;
    let stream = body;
    if (digest) stream = stream.pipeThrough(digest.stream);
    if (reservation) stream = stream.pipeThrough(quotaStream(reservation));
    await stream.pipeTo(upload.writable);
    return digest?.hex() ?? null;
  }

  /** `streamInto` for a body already in one buffer: no stream between the bytes and the file. */
  async function bytesInto(
    upload: Upload,
    bytes: Uint8Array,
    reservation: Reservation | null,
  ): Promise<string | null> {
    reservation?.ensure(bytes.byteLength);
    const hex = options.verifyUpload ? await hashBytes(bytes, "sha256") : null;
    await writeBytes(upload.writable, bytes);
    return hex;
  }

  /** Whether the stored object hashes to `id`; null when it no longer exists. */
  async function storedMatches(objectPath: string, id: string): Promise<boolean | null> {
    try {
      return (await hashStream(await provider.read(objectPath))).hex === id;
    } catch (error) {
      if (toStowageError(error).kind === "NotFound") return null;
      throw error;
    }
  }

  return async (request: Request) => {
    try {
      return await handle(request);
    } catch (error) {
      return errorResponse(error, request.method);
    }
  };
}

function redirect(location: string, method: string): Response {
  const headers = new Headers({ location });
  if (method === "GET" || method === "HEAD") {
    const body = `<a href="${escapeHtml(location)}">${REASONS[301]}</a>.\n\n`;
    headers.set("content-type", "text/html; charset=utf-8");
    headers.set("content-length", String(new TextEncoder().encode(body).byteLength));
    return new Response(method === "HEAD" ? null : body, { status: 301, headers });
  }
  headers.set("content-length", "0");
  return new Response(null, { status: 301, headers });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (c) => c.close() });
}

function declaredLength(request: Request): number | null {
  const text = request.headers.get("content-length");
  if (text === null || !/^\d+$/.test(text)) return null;
  return Number(text);
}

/** Errors from reading a request body are the client's (truncated upload); others pass. */
function bodyError(error: unknown, configUpload: boolean): StowageError {
  if (error instanceof StowageError) return error;
  const e = new StowageError(
    configUpload ? "Internal" : "Truncated",
    "request body ended early",
    { detail: String((error as Error)?.message ?? error), cause: error },
  );
  return e;
}
