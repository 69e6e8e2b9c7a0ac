// S3-compatible object storage provider (AWS S3, Ceph RGW, MinIO, Garage…): several stateless
// stowage instances can serve one bucket. Same semantics as the fs provider, mapped this way:
//
// - Objects: key K lives at `<prefix>/K`. Uploads are buffered up to `multipartThreshold` and
//   sent with one PUT at commit; a larger body becomes a multipart upload whose parts are sent
//   while the body streams (at most `partConcurrency` in flight, so memory stays at a few part
//   buffers). An upload is invisible until commit: the PUT, or CompleteMultipartUpload, makes it
//   visible whole. Abort discards the buffer or sends AbortMultipartUpload. Every body carries
//   Content-MD5, which the store verifies; stowage verifies SHA-256 digests itself.
// - No-replace commits: a single PUT carries `If-None-Match: *` (atomic; 412 means "Exists").
//   CompleteMultipartUpload and CopyObject ignore that header on Ceph RGW 16, so for them the
//   provider checks the key right before completing: not atomic, but only objects larger than
//   the threshold take that path, and stowage's large objects (restic packs, borg packs) are
//   content-addressed, so two racing writers store the same bytes. `conditionalComplete: true`
//   sends the header on completion for stores that honour it (AWS S3 since 2024);
//   `conditionalPut: false` checks before every PUT for stores that ignore it altogether.
// - Directories are emulated: `mkdir` writes a zero-byte marker object `<dir>/` for the
//   directory and each missing ancestor, and `begin` does so for the parents of the new key, so
//   a directory exists from its creation until rmdir/removeTree, as on a file system, and an
//   empty restic type directory or borg store lists as []. A directory also exists while any
//   object lies below it (objects written by other tools). rmdir fails with NotEmpty when
//   anything is below, else deletes the marker; removeTree deletes every object below (and
//   aborts multipart uploads there). Markers known to exist are remembered for `dirCacheMs`.
// - Listing uses ListObjectsV2 with delimiter "/" and continuation tokens, streamed page by
//   page, re-sorted into name order (S3 orders "a-b" before the directory "a/").
// - move = CopyObject (UploadPartCopy above `multipartCopyThreshold`) + DeleteObject: not
//   atomic (a crash in between leaves both names), as the fs provider's fallback without links.
// - Times: S3 keeps no access time, so atimeMs is the modification time.
// - Reads are ranged GETs; a read interrupted mid-body resumes from where it stopped, pinned to
//   the object's ETag (If-Match), up to `readResumes` times.
// - Throttling, 5xx and network errors are retried (see s3_client.ts); when the store stays
//   unreachable the error kind is "Unavailable" (HTTP 503 for restic and borg clients).

import { StowageError, toStowageError } from "../errors.ts";
import { assertSafeKey, unsafeKeyReason } from "./keys.ts";
import { noteBytesMoved } from "../gc_hint.ts";
import type { BeginOptions, ByteRange, Entry, Provider, Stat, Upload } from "./provider.ts";
import { compareNames, parentKey } from "./provider.ts";
import {
  md5Hex,
  type S3Answer,
  S3Client,
  type S3ClientOptions,
  s3Error,
  type S3Request,
} from "./s3_client.ts";
import { NameOrder } from "./s3_list.ts";
import {
  completeMultipartXml,
  deleteObjectsXml,
  firstTag,
  type ListedObject,
  type ListPage,
  parseDeleteErrors,
  parseErrorBody,
  parseListPage,
  parseUploadsPage,
} from "./s3_xml.ts";

export type { S3ClientOptions, S3Credentials, S3RetryOptions } from "./s3_client.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The largest object one PUT or one CopyObject may write, and the largest part. */
export const S3_MAX_SINGLE_SIZE = 5 * GiB;
/** S3 allows at most this many parts per multipart upload. */
export const S3_MAX_PARTS = 10_000;

export interface S3ProviderOptions extends S3ClientOptions {
  /** Key prefix inside the bucket, without leading or trailing slash ("" = the whole bucket). */
  prefix?: string;
  /**
   * Bodies up to this size are sent with one PUT at commit; larger ones as multipart uploads
   * (default 8 MiB; at most `partSize`).
   */
  multipartThreshold?: number;
  /**
   * Size of multipart parts (default 8 MiB; 1 MiB to 5 GiB). AWS and a default Ceph need at
   * least 5 MiB. Parts grow after every 1000 parts, so an upload may reach ~55000 × partSize.
   */
  partSize?: number;
  /** Parts of one upload in flight at once (default 2); memory ≈ (this + 1) × partSize. */
  partConcurrency?: number;
  /** Keys per ListObjectsV2 page (1–1000, default 1000). */
  listPageSize?: number;
  /** Objects larger than this are moved with UploadPartCopy (default and maximum 5 GiB). */
  multipartCopyThreshold?: number;
  /** Part size of UploadPartCopy (default 1 GiB, at most 5 GiB). */
  copyPartSize?: number;
  /** Send `If-None-Match: *` on no-replace PUTs (default true; false: check, then PUT). */
  conditionalPut?: boolean;
  /** Send `If-None-Match: *` on no-replace CompleteMultipartUpload (default false). */
  conditionalComplete?: boolean;
  /** How long a directory marker known to exist is trusted without asking (default 30 s). */
  dirCacheMs?: number;
  /** How often an interrupted read resumes (default 3). */
  readResumes?: number;
}

interface ObjectHead {
  size: number;
  mtimeMs: number;
  etag: string;
}

interface Probe {
  file: ObjectHead | null;
  dir: boolean;
}

const DIR_STAT: Stat = { size: 0, isDirectory: true, atimeMs: 0, mtimeMs: 0 };
const DIR_CACHE_LIMIT = 10_000;
// deno-lint-ignore no-control-regex
const XML_UNSAFE = /[\u0000-\u001f\ufffe\uffff]/;
const ERROR_STATUSES = Array.from({ length: 200 }, (_, i) => 300 + i);

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive integer`);
  return v;
}

function fromListed(o: ListedObject): ObjectHead {
  return { size: o.size, mtimeMs: o.lastModifiedMs, etag: o.etag };
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.close();
    },
  });
}

/** reader.read(), failing when no chunk arrives within `ms` (a stalled connection). */
async function readWithin<T>(
  reader: ReadableStreamDefaultReader<T>,
  ms: number,
): Promise<ReadableStreamReadResult<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no data for ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

function unquote(etag: string | null): string {
  return (etag ?? "").replace(/"/g, "");
}

/** ETag S3 gives a completed multipart upload: MD5 of the parts' binary MD5s, "-", count. */
export function multipartEtag(partEtags: string[]): string {
  const bytes = new Uint8Array(partEtags.length * 16);
  partEtags.forEach((etag, i) => {
    for (let j = 0; j < 16; j++) bytes[i * 16 + j] = parseInt(etag.slice(j * 2, j * 2 + 2), 16);
  });
  return `${md5Hex(bytes)}-${partEtags.length}`;
}

export class S3Provider implements Provider {
  readonly description: string;
  readonly client: S3Client;
  readonly prefix: string;
  readonly multipartThreshold: number;
  readonly partSize: number;
  readonly partConcurrency: number;
  readonly #listPageSize: number;
  readonly #copyThreshold: number;
  readonly #copyPartSize: number;
  readonly #conditionalPut: boolean;
  readonly #conditionalComplete: boolean;
  readonly #dirCacheMs: number;
  readonly #readResumes: number;
  /** Directory keys whose marker is known to exist, with the time that knowledge expires. */
  readonly #dirs = new Map<string, number>();

  constructor(options: S3ProviderOptions) {
    const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
    const reason = unsafeKeyReason(prefix);
    if (reason !== null) throw new TypeError(`invalid S3 prefix ${prefix}: ${reason}`);
    this.client = new S3Client(options);
    this.prefix = prefix;
    this.partSize = positiveInt(options.partSize, 8 * MiB, "partSize");
    if (this.partSize < MiB || this.partSize > S3_MAX_SINGLE_SIZE) {
      throw new TypeError("partSize must be between 1 MiB and 5 GiB");
    }
    this.multipartThreshold = positiveInt(
      options.multipartThreshold,
      this.partSize,
      "multipartThreshold",
    );
    if (this.multipartThreshold > this.partSize) {
      throw new TypeError("multipartThreshold must not exceed partSize");
    }
    this.partConcurrency = positiveInt(options.partConcurrency, 2, "partConcurrency");
    this.#listPageSize = positiveInt(options.listPageSize, 1000, "listPageSize");
    if (this.#listPageSize > 1000) throw new TypeError("listPageSize must be at most 1000");
    this.#copyThreshold = positiveInt(
      options.multipartCopyThreshold,
      S3_MAX_SINGLE_SIZE,
      "multipartCopyThreshold",
    );
    this.#copyPartSize = positiveInt(options.copyPartSize, GiB, "copyPartSize");
    if (this.#copyThreshold > S3_MAX_SINGLE_SIZE || this.#copyPartSize > S3_MAX_SINGLE_SIZE) {
      throw new TypeError("multipartCopyThreshold and copyPartSize must be at most 5 GiB");
    }
    this.#conditionalPut = options.conditionalPut ?? true;
    this.#conditionalComplete = options.conditionalComplete ?? false;
    this.#dirCacheMs = Math.max(0, options.dirCacheMs ?? 30_000);
    this.#readResumes = Math.max(0, options.readResumes ?? 3);
    this.description = `S3 bucket ${this.client.bucket} at ${this.client.endpoint.origin}` +
      (prefix === "" ? "" : `, under ${prefix}/`);
  }

  // -------------------------------------------------------------------------------------------
  // Key mapping and small requests

  /** The object key of a provider key ("" gives the prefix itself). */
  objectKey(key: string): string {
    if (this.prefix === "") return key;
    return key === "" ? this.prefix : `${this.prefix}/${key}`;
  }

  /** The key prefix of everything below a directory ("" for the root of an unprefixed bucket). */
  #dirPrefix(dir: string): string {
    const key = this.objectKey(dir);
    return key === "" ? "" : `${key}/`;
  }

  /** One raw request to the bucket (retries and error mapping included). */
  async send(request: S3Request): Promise<S3Answer> {
    return await this.client.send(request);
  }

  async #listPage(
    prefix: string,
    delimiter: boolean,
    maxKeys: number,
    token: string | null,
  ): Promise<ListPage> {
    const query: Array<[string, string]> = [
      ["list-type", "2"],
      ["prefix", prefix],
      ["max-keys", String(maxKeys)],
      ["encoding-type", "url"],
    ];
    if (delimiter) query.push(["delimiter", "/"]);
    if (token !== null) query.push(["continuation-token", token]);
    const { text } = await this.client.send({
      method: "GET",
      query,
      readText: true,
      what: `LIST ${prefix}`,
    });
    return parseListPage(text);
  }

  /** HEAD of an object key: null when absent. */
  async #head(objectKey: string): Promise<ObjectHead | null> {
    const { response } = await this.client.send({
      method: "HEAD",
      key: objectKey,
      accept: [404],
    });
    await response.body?.cancel();
    if (response.status === 404) return null;
    return {
      size: Number(response.headers.get("content-length") ?? "0"),
      mtimeMs: Date.parse(response.headers.get("last-modified") ?? "") || 0,
      etag: unquote(response.headers.get("etag")),
    };
  }

  /**
   * Whether `key` is an object, a directory (marker or anything below), or both, with one
   * ListObjectsV2 in the common case: prefix = the key, delimiter "/". The object itself is the
   * first key listed; the directory's common prefix "key/" follows after the keys that continue
   * the name with a character below "/", so rarely a second page is needed.
   */
  async #probe(key: string): Promise<Probe> {
    const objectKey = this.objectKey(key);
    const dirKey = `${objectKey}/`;
    let file: ObjectHead | null = null;
    let token: string | null = null;
    let maxKeys = 2;
    for (;;) {
      const page = await this.#listPage(objectKey, true, maxKeys, token);
      for (const o of page.objects) if (o.key === objectKey) file = fromListed(o);
      if (page.prefixes.includes(dirKey)) return { file, dir: true };
      if (!page.truncated || page.next === null) return { file, dir: false };
      const lastObject = page.objects.at(-1)?.key ?? "";
      const lastPrefix = page.prefixes.at(-1) ?? "";
      const last = compareNames(lastObject, lastPrefix) > 0 ? lastObject : lastPrefix;
      if (compareNames(last, dirKey) > 0) return { file, dir: false };
      token = page.next;
      maxKeys = 1000;
    }
  }

  #dirKnown(dir: string): boolean {
    if (dir === "") return true;
    const until = this.#dirs.get(dir);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#dirs.delete(dir);
    return false;
  }

  #rememberDir(dir: string): void {
    if (this.#dirCacheMs === 0) return;
    if (this.#dirs.size >= DIR_CACHE_LIMIT) this.#dirs.clear();
    this.#dirs.set(dir, Date.now() + this.#dirCacheMs);
  }

  #forgetTree(dir: string): void {
    if (dir === "") {
      this.#dirs.clear();
      return;
    }
    for (const known of [...this.#dirs.keys()]) {
      if (known === dir || known.startsWith(`${dir}/`)) this.#dirs.delete(known);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Provider

  async stat(key: string): Promise<Stat | null> {
    assertSafeKey(key);
    if (key === "") return { ...DIR_STAT };
    const probe = await this.#probe(key);
    if (probe.file !== null) {
      const { size, mtimeMs } = probe.file;
      return { size, isDirectory: false, atimeMs: mtimeMs, mtimeMs };
    }
    return probe.dir ? { ...DIR_STAT } : null;
  }

  async *list(dir: string): AsyncIterable<Entry> {
    assertSafeKey(dir);
    const prefix = this.#dirPrefix(dir);
    const order = new NameOrder<Entry>();
    let token: string | null = null;
    let first = true;
    do {
      const page: ListPage = await this.#listPage(prefix, true, this.#listPageSize, token);
      if (first) {
        first = false;
        if (dir !== "" && !page.truncated && page.objects.length + page.prefixes.length === 0) {
          const probe = await this.#probe(dir);
          if (probe.file !== null) throw new StowageError("NotDirectory", "not a directory");
          throw new StowageError("NotFound", "not found");
        }
      }
      const ready: Entry[] = [];
      let o = 0;
      let p = 0;
      while (o < page.objects.length || p < page.prefixes.length) {
        const object = page.objects[o];
        const common = page.prefixes[p];
        const takeObject = common === undefined ||
          (object !== undefined && compareNames(object.key, common) < 0);
        if (takeObject) {
          o++;
          const name = object.key.slice(prefix.length);
          if (name === "" || name.includes("/") || unsafeKeyReason(name) !== null) continue;
          const entry: Entry = {
            name,
            size: object.size,
            isDirectory: false,
            atimeMs: object.lastModifiedMs,
            mtimeMs: object.lastModifiedMs,
          };
          ready.push(...order.push(entry, name));
        } else {
          p++;
          const name = common.slice(prefix.length, -1);
          if (name === "" || name.includes("/") || unsafeKeyReason(name) !== null) continue;
          ready.push(...order.push({ name, ...DIR_STAT }, `${name}/`));
        }
      }
      yield* ready;
      token = page.truncated ? page.next : null;
    } while (token !== null);
    yield* order.flush();
  }

  async read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>> {
    assertSafeKey(key);
    if (key === "") throw new StowageError("IsDirectory", "is a directory");
    const objectKey = this.objectKey(key);
    if (range !== undefined && range.length <= 0) {
      const probe = await this.#probe(key);
      if (probe.file !== null) return emptyStream();
      if (probe.dir) throw new StowageError("IsDirectory", "is a directory");
      throw new StowageError("NotFound", "not found");
    }
    const start = range?.offset ?? 0;
    const headers: Record<string, string> = {};
    if (range !== undefined) headers.range = `bytes=${start}-${start + range.length - 1}`;
    const { response } = await this.client.send({
      method: "GET",
      key: objectKey,
      headers,
      accept: [404, 416],
    });
    if (response.status === 404 || response.status === 416) {
      await response.body?.cancel();
      if (response.status === 416) return emptyStream(); // the range starts at or past the end
      const probe = await this.#probe(key);
      if (probe.dir) throw new StowageError("IsDirectory", "is a directory");
      throw new StowageError("NotFound", "not found");
    }
    const length = Number(response.headers.get("content-length") ?? "NaN");
    const etag = unquote(response.headers.get("etag"));
    if (response.body === null || !Number.isSafeInteger(length)) {
      await response.body?.cancel();
      throw new StowageError("Internal", "object store answer without a length", {
        detail: `s3 GET ${objectKey}: no content-length`,
      });
    }
    return this.#resumingStream(objectKey, response.body, start, start + length, etag);
  }

  /** A body stream that re-requests the rest of the range after a broken connection. */
  #resumingStream(
    objectKey: string,
    body: ReadableStream<Uint8Array>,
    start: number,
    end: number,
    etag: string,
  ): ReadableStream<Uint8Array> {
    let reader = body.getReader();
    let position = start;
    let resumes = this.#readResumes;
    const client = this.client;
    const idleMs = client.timeoutMs;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          let failure: unknown = null;
          try {
            const { value, done } = await readWithin(reader, idleMs);
            if (!done) {
              position += value.byteLength;
              noteBytesMoved(value.byteLength);
              controller.enqueue(value);
              return;
            }
            if (position >= end) {
              controller.close();
              return;
            }
            failure = new Error(`body ended at ${position} of ${end}`);
          } catch (error) {
            failure = error;
          }
          await reader.cancel().catch(() => {});
          if (resumes-- <= 0 || etag === "") {
            controller.error(
              new StowageError("Unavailable", "object store read interrupted", {
                detail: `s3 GET ${objectKey} at ${position}: ${failure}`,
              }),
            );
            return;
          }
          try {
            const { response } = await client.send({
              method: "GET",
              key: objectKey,
              headers: { range: `bytes=${position}-${end - 1}`, "if-match": `"${etag}"` },
              accept: [412],
              what: `GET ${objectKey} (resumed at ${position})`,
            });
            if (response.status === 412 || response.body === null) {
              await response.body?.cancel();
              controller.error(
                new StowageError("Internal", "object changed while being read", {
                  detail: `s3 GET ${objectKey}: ETag ${etag} no longer matches`,
                }),
              );
              return;
            }
            reader = response.body.getReader();
          } catch (error) {
            controller.error(toStowageError(error));
            return;
          }
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  async begin(key: string, options: BeginOptions = {}): Promise<Upload> {
    assertSafeKey(key);
    if (key === "") throw new StowageError("BadRequest", "empty name");
    const parent = parentKey(key);
    if (options.createParents === false) {
      if (!this.#dirKnown(parent)) {
        const probe = await this.#probe(parent);
        if (!probe.dir) throw new StowageError("NotFound", "not found");
      }
    } else {
      await this.#mkdirs(parent);
    }
    return new S3Upload(this, key, options.sizeHint, {
      conditionalPut: this.#conditionalPut,
      conditionalComplete: this.#conditionalComplete,
    });
  }

  async delete(key: string): Promise<number | null> {
    assertSafeKey(key);
    if (key === "") throw new StowageError("IsDirectory", "is a directory");
    const probe = await this.#probe(key);
    if (probe.file === null) {
      if (probe.dir) throw new StowageError("IsDirectory", "is a directory");
      return null;
    }
    await this.#deleteObject(this.objectKey(key));
    return probe.file.size;
  }

  async #deleteObject(objectKey: string): Promise<void> {
    const { response } = await this.client.send({
      method: "DELETE",
      key: objectKey,
      accept: [404],
    });
    await response.body?.cancel();
  }

  async move(from: string, to: string, options: { replace: boolean }): Promise<void> {
    assertSafeKey(from);
    assertSafeKey(to);
    if (from === "" || to === "") throw new StowageError("IsDirectory", "is a directory");
    const source = await this.#probe(from);
    if (source.file === null) throw new StowageError("NotFound", "not found");
    await this.#mkdirs(parentKey(to));
    if (from === to) return;
    const target = await this.#probe(to);
    if (target.file === null && target.dir) {
      throw new StowageError("IsDirectory", "is a directory");
    }
    if (!options.replace && target.file !== null) {
      throw new StowageError("Exists", "already exists");
    }
    const fromKey = this.objectKey(from);
    const toKey = this.objectKey(to);
    if (source.file.size > this.#copyThreshold) {
      await this.#multipartCopy(fromKey, toKey, source.file);
    } else {
      const { text } = await this.client.send({
        method: "PUT",
        key: toKey,
        headers: {
          "x-amz-copy-source": this.client.copySource(fromKey),
          "x-amz-metadata-directive": "COPY",
        },
        readText: true,
        what: `COPY ${fromKey} → ${toKey}`,
      });
      this.#checkResultBody(text, `COPY ${fromKey} → ${toKey}`);
    }
    await this.#deleteObject(fromKey);
  }

  /** CopyObject and CompleteMultipartUpload may answer 200 with an <Error> document. */
  #checkResultBody(text: string, what: string): void {
    if (!/<Error[\s>]/.test(text)) return;
    const { code, message } = parseErrorBody(text);
    const status = code === "InternalError" || code === "SlowDown" ? 503 : 400;
    throw s3Error({ status, code, message }, what, this.client.location);
  }

  async #multipartCopy(fromKey: string, toKey: string, source: ObjectHead): Promise<void> {
    const what = `COPY ${fromKey} → ${toKey}`;
    const uploadId = await this.createMultipart(toKey);
    try {
      const count = Math.ceil(source.size / this.#copyPartSize);
      const etags: string[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const index = next++;
          const first = index * this.#copyPartSize;
          const last = Math.min(source.size, first + this.#copyPartSize) - 1;
          const { response, text } = await this.client.send({
            method: "PUT",
            key: toKey,
            query: [["partNumber", String(index + 1)], ["uploadId", uploadId]],
            headers: {
              "x-amz-copy-source": this.client.copySource(fromKey),
              "x-amz-copy-source-if-match": `"${source.etag}"`,
              "x-amz-copy-source-range": `bytes=${first}-${last}`,
            },
            accept: [412],
            readText: true,
            what: `${what} part ${index + 1}`,
          });
          if (response.status === 412) {
            throw new StowageError("Internal", "object changed while being moved", {
              detail: `s3 ${what}: the source no longer has ETag ${source.etag}`,
            });
          }
          this.#checkResultBody(text, `${what} part ${index + 1}`);
          etags[index] = (firstTag(text, "ETag") ?? "").replace(/"/g, "");
        }
      };
      await Promise.all(
        Array.from({ length: Math.min(this.partConcurrency, count) }, () => worker()),
      );
      await this.completeMultipart(toKey, uploadId, etags, { ifNoneMatch: false });
    } catch (error) {
      await this.abortMultipart(toKey, uploadId).catch(() => {});
      throw error;
    }
  }

  /** Creates marker objects for `dir` and its ancestors unless known; NotDirectory over files. */
  async #mkdirs(dir: string): Promise<void> {
    if (dir === "") return;
    const levels: string[] = [];
    for (let d = dir; d !== ""; d = parentKey(d)) {
      if (this.#dirKnown(d)) break;
      levels.unshift(d);
    }
    if (levels.length === 0) return;
    const files = await Promise.all(levels.map((level) => this.#head(this.objectKey(level))));
    if (files.some((file) => file !== null)) {
      throw new StowageError("NotDirectory", "not a directory");
    }
    await Promise.all(levels.map(async (level) => {
      const { response } = await this.client.send({
        method: "PUT",
        key: `${this.objectKey(level)}/`,
        body: new Uint8Array(0),
        what: `PUT ${this.objectKey(level)}/ (directory marker)`,
      });
      await response.body?.cancel();
    }));
    for (const level of levels) this.#rememberDir(level);
  }

  async mkdir(dir: string): Promise<void> {
    assertSafeKey(dir);
    await this.#mkdirs(dir);
  }

  async rmdir(dir: string): Promise<void> {
    assertSafeKey(dir);
    const prefix = this.#dirPrefix(dir);
    const page = await this.#listPage(prefix, false, 2, null);
    if (page.objects.some((o) => o.key !== prefix)) {
      throw new StowageError("NotEmpty", "directory not empty");
    }
    if (dir === "") return; // the root (the bucket or the prefix) always exists
    if (page.objects.length === 0) {
      const probe = await this.#probe(dir);
      if (probe.file !== null) throw new StowageError("NotDirectory", "not a directory");
      throw new StowageError("NotFound", "not found");
    }
    this.#forgetTree(dir);
    await this.#deleteObject(prefix);
  }

  async removeTree(dir: string): Promise<void> {
    assertSafeKey(dir);
    const prefix = this.#dirPrefix(dir);
    this.#forgetTree(dir);
    let token: string | null = null;
    do {
      const page: ListPage = await this.#listPage(prefix, false, 1000, token);
      if (page.objects.length > 0) await this.#deleteObjects(page.objects.map((o) => o.key));
      token = page.truncated ? page.next : null;
    } while (token !== null);
    await this.#abortUploads(prefix, () => true);
    this.#forgetTree(dir);
  }

  async #deleteObjects(all: string[]): Promise<void> {
    // Keys XML 1.0 cannot carry (control characters, written by other tools) go one by one.
    const keys: string[] = [];
    for (const key of all) {
      if (XML_UNSAFE.test(key)) await this.#deleteObject(key);
      else keys.push(key);
    }
    if (keys.length === 0) return;
    const { text } = await this.client.send({
      method: "POST",
      query: [["delete", ""]],
      body: new TextEncoder().encode(deleteObjectsXml(keys)),
      readText: true,
      what: `DELETE ${keys.length} objects`,
    });
    const failed = parseDeleteErrors(text).filter((e) => e.code !== "NoSuchKey");
    if (failed.length > 0) {
      throw new StowageError("Internal", "object store could not delete objects", {
        detail: `s3 DeleteObjects: ${
          failed.slice(0, 5).map((e) => `${e.key}: ${e.code}`).join(", ")
        }`,
      });
    }
  }

  /** Aborts the multipart uploads below `prefix` for which `select` is true; counts them. */
  async #abortUploads(
    prefix: string,
    select: (initiatedMs: number) => boolean,
  ): Promise<number> {
    let aborted = 0;
    let keyMarker: string | null = null;
    let uploadIdMarker: string | null = null;
    for (;;) {
      const query: Array<[string, string]> = [
        ["uploads", ""],
        ["prefix", prefix],
        ["encoding-type", "url"],
      ];
      if (keyMarker !== null) query.push(["key-marker", keyMarker]);
      if (uploadIdMarker !== null) query.push(["upload-id-marker", uploadIdMarker]);
      const { text } = await this.client.send({
        method: "GET",
        query,
        readText: true,
        what: `LIST UPLOADS ${prefix}`,
      });
      const page = parseUploadsPage(text);
      for (const upload of page.uploads) {
        if (!select(upload.initiatedMs)) continue;
        await this.abortMultipart(upload.key, upload.uploadId);
        aborted++;
      }
      if (!page.truncated || page.nextKeyMarker === null) return aborted;
      keyMarker = page.nextKeyMarker;
      uploadIdMarker = page.nextUploadIdMarker;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Beyond the Provider interface

  /**
   * Startup check: lists one key below the prefix (needs the bucket, valid credentials, list
   * permission and a sane clock). Throws a StowageError whose message is one line naming the
   * problem; resolves quietly when the store answers.
   */
  async check(): Promise<void> {
    const where = `${this.client.location}`;
    let answer;
    try {
      answer = await this.client.send({
        method: "GET",
        query: [["list-type", "2"], ["prefix", this.#dirPrefix("")], ["max-keys", "1"]],
        accept: ERROR_STATUSES,
        readText: true,
        what: "startup check",
      });
    } catch (error) {
      const e = toStowageError(error);
      const reason = (e.detail ?? e.message).replace(/^s3 startup check: /, "");
      throw new StowageError(e.kind, `S3: ${reason}`, { detail: e.detail, cause: error });
    }
    const { status } = answer.response;
    if (status >= 200 && status < 300) return;
    const { code, message } = parseErrorBody(answer.text);
    const explain: Record<string, string> = {
      NoSuchBucket: `bucket ${this.client.bucket} does not exist at ${this.client.endpoint.origin}`,
      InvalidAccessKeyId: `the object store at ${where} does not know the access key ID`,
      SignatureDoesNotMatch:
        `the object store at ${where} rejected the signature: check the secret access key`,
      AccessDenied: `access to ${where} denied: check the key's permissions and bucket policy`,
      RequestTimeTooSkewed: `the object store at ${where} says this machine's clock is wrong`,
      AuthorizationHeaderMalformed:
        `the object store at ${where} rejected the request: check the region (${this.client.region})`,
      PermanentRedirect:
        `bucket ${this.client.bucket} lives in another region or endpoint than ${where}`,
    };
    const text = explain[code] ??
      `the object store at ${where} answered ${status}${code ? ` ${code}` : ""}${
        message ? `: ${message}` : ""
      }`;
    throw new StowageError("Internal", `S3: ${text}`, {
      detail: `startup check: ${status} ${code}`,
    });
  }

  /**
   * Aborts multipart uploads below the prefix started more than `olderThanMs` ago: those of
   * stowage processes that died mid-upload (an S3 lifecycle rule
   * AbortIncompleteMultipartUpload does the same). Returns how many were aborted.
   */
  async sweepUploads(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    return await this.#abortUploads(this.#dirPrefix(""), (initiated) => initiated < cutoff);
  }

  /** Starts a multipart upload; resolves to its upload ID. */
  async createMultipart(objectKey: string): Promise<string> {
    const { text } = await this.client.send({
      method: "POST",
      key: objectKey,
      query: [["uploads", ""]],
      readText: true,
      what: `CREATE MULTIPART ${objectKey}`,
    });
    const uploadId = firstTag(text, "UploadId");
    if (!uploadId) {
      throw new StowageError("Internal", "object store error", {
        detail: `s3 CreateMultipartUpload ${objectKey}: no UploadId in ${text.slice(0, 200)}`,
      });
    }
    return uploadId;
  }

  /** Completes a multipart upload of parts 1..n; `ifNoneMatch` adds `If-None-Match: *`. */
  async completeMultipart(
    objectKey: string,
    uploadId: string,
    etags: string[],
    options: { ifNoneMatch: boolean },
  ): Promise<void> {
    const what = `COMPLETE MULTIPART ${objectKey}`;
    const answer = await this.client.send({
      method: "POST",
      key: objectKey,
      query: [["uploadId", uploadId]],
      headers: options.ifNoneMatch ? { "if-none-match": "*" } : {},
      body: new TextEncoder().encode(completeMultipartXml(etags)),
      accept: options.ifNoneMatch ? [412] : [],
      readText: true,
      what,
    });
    if (answer.response.status === 412) {
      // A retry after a lost answer may find our own completed object.
      if (answer.attempts > 1) {
        const head = await this.#head(objectKey);
        if (head !== null && head.etag === multipartEtag(etags)) return;
      }
      throw new StowageError("Exists", "already exists");
    }
    this.#checkResultBody(answer.text, what);
  }

  /** Aborts a multipart upload (an upload already gone is fine). */
  async abortMultipart(objectKey: string, uploadId: string): Promise<void> {
    const { response } = await this.client.send({
      method: "DELETE",
      key: objectKey,
      query: [["uploadId", uploadId]],
      accept: [404],
      what: `ABORT MULTIPART ${objectKey}`,
    });
    await response.body?.cancel();
  }

  /**
   * PUTs a whole object. `noReplace` sends `If-None-Match: *` (or checks first when conditional
   * PUTs are off); a 412 after a retry counts as success when the stored ETag is our MD5.
   */
  async putObject(
    objectKey: string,
    key: string,
    body: Uint8Array,
    noReplace: boolean,
  ): Promise<void> {
    if (noReplace && !this.#conditionalPut && (await this.#probe(key)).file !== null) {
      throw new StowageError("Exists", "already exists");
    }
    const conditional = noReplace && this.#conditionalPut;
    const answer = await this.client.send({
      method: "PUT",
      key: objectKey,
      body,
      headers: conditional ? { "if-none-match": "*" } : {},
      accept: conditional ? [412] : [],
    });
    await answer.response.body?.cancel();
    if (answer.response.status === 412) {
      if (answer.attempts > 1) {
        const head = await this.#head(objectKey);
        if (head !== null && head.etag === md5Hex(body)) return;
      }
      throw new StowageError("Exists", "already exists");
    }
  }

  /** True when `key` is currently an object (used before non-atomic no-replace completes). */
  async objectExists(key: string): Promise<boolean> {
    return (await this.#probe(key)).file !== null;
  }
}

type UploadState = "open" | "committing" | "committed" | "aborted";

/**
 * One upload: bytes are copied into a part buffer; a full buffer followed by more bytes becomes
 * a multipart part, sent in the background (at most `partConcurrency` in flight: `write` waits
 * for a slot, which is the backpressure). A body that never exceeds the threshold is one PUT.
 */
class S3Upload implements Upload {
  readonly writable: WritableStream<Uint8Array>;
  readonly #provider: S3Provider;
  readonly #key: string;
  readonly #objectKey: string;
  readonly #conditionalPut: boolean;
  readonly #conditionalComplete: boolean;
  readonly #basePartSize: number;
  #state: UploadState = "open";
  #written = 0;
  #buffer: Uint8Array | null;
  #filled = 0;
  /** The number the current buffer will have as a part. */
  #partNumber = 1;
  #uploadId: Promise<string> | null = null;
  readonly #etags: string[] = [];
  readonly #inflight = new Set<Promise<void>>();
  #failure: StowageError | null = null;

  constructor(
    provider: S3Provider,
    key: string,
    sizeHint: number | undefined,
    options: { conditionalPut: boolean; conditionalComplete: boolean },
  ) {
    this.#provider = provider;
    this.#key = key;
    this.#objectKey = provider.objectKey(key);
    this.#conditionalPut = options.conditionalPut;
    this.#conditionalComplete = options.conditionalComplete;
    // Huge announced bodies get parts large enough to stay within S3's part count.
    const hint = sizeHint !== undefined && sizeHint > 0 ? sizeHint : 0;
    this.#basePartSize = Math.min(
      S3_MAX_SINGLE_SIZE,
      Math.max(provider.partSize, Math.ceil(hint / (S3_MAX_PARTS - 1000))),
    );
    const initial = hint > 0 ? hint : 64 * 1024;
    this.#buffer = new Uint8Array(Math.min(initial, this.#partCapacity(1)));
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      abort: () => this.abort(),
    });
  }

  written(): number {
    return this.#written;
  }

  /** Part n's size: the base size, growing by one base size every 1000 parts. */
  #partCapacity(n: number): number {
    return Math.min(S3_MAX_SINGLE_SIZE, this.#basePartSize * (1 + Math.floor((n - 1) / 1000)));
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== "open") throw new StowageError("Internal", "upload already finished");
    if (this.#failure) throw this.#failure;
    this.#written += chunk.byteLength;
    noteBytesMoved(chunk.byteLength);
    let at = 0;
    while (at < chunk.byteLength) {
      const capacity = this.#partCapacity(this.#partNumber);
      let buffer = this.#buffer!;
      if (this.#filled === capacity) {
        // The buffer is a full part and more bytes follow: send it.
        await this.#sendPart(buffer);
        buffer = this.#buffer!;
      } else if (this.#filled === buffer.byteLength) {
        const grown = new Uint8Array(
          Math.min(capacity, Math.max(buffer.byteLength * 2, this.#filled + chunk.byteLength - at)),
        );
        grown.set(buffer.subarray(0, this.#filled));
        this.#buffer = buffer = grown;
      }
      const n = Math.min(buffer.byteLength - this.#filled, chunk.byteLength - at);
      buffer.set(chunk.subarray(at, at + n), this.#filled);
      this.#filled += n;
      at += n;
    }
  }

  /** Hands the full buffer to a background part upload and waits for a free slot. */
  async #sendPart(buffer: Uint8Array): Promise<void> {
    const number = this.#partNumber++;
    const data = buffer.subarray(0, this.#filled);
    this.#filled = 0;
    this.#buffer = new Uint8Array(this.#partCapacity(this.#partNumber));
    const task = this.#uploadPart(number, data).catch((error) => {
      this.#failure ??= toStowageError(error);
    });
    this.#inflight.add(task);
    task.finally(() => this.#inflight.delete(task));
    while (this.#inflight.size >= this.#provider.partConcurrency) {
      await Promise.race(this.#inflight);
    }
    if (this.#failure) throw this.#failure;
    if (this.#state !== "open") throw new StowageError("Internal", "upload already finished");
  }

  async #uploadPart(number: number, data: Uint8Array): Promise<void> {
    this.#uploadId ??= this.#provider.createMultipart(this.#objectKey);
    const uploadId = await this.#uploadId;
    if (this.#state === "aborted") return;
    const { response } = await this.#provider.send({
      method: "PUT",
      key: this.#objectKey,
      query: [["partNumber", String(number)], ["uploadId", uploadId]],
      body: data,
      what: `PUT ${this.#objectKey} part ${number}`,
    });
    await response.body?.cancel();
    const etag = unquote(response.headers.get("etag"));
    if (etag === "") {
      throw new StowageError("Internal", "object store error", {
        detail: `s3 UploadPart ${this.#objectKey} ${number}: no ETag`,
      });
    }
    this.#etags[number - 1] = etag;
  }

  async commit(options: { replace: boolean }): Promise<void> {
    if (this.#state !== "open") throw new StowageError("Internal", "upload already finished");
    this.#state = "committing";
    try {
      if (this.#uploadId === null && this.#partNumber === 1) {
        const body = this.#buffer!.subarray(0, this.#filled);
        await this.#provider.putObject(this.#objectKey, this.#key, body, !options.replace);
      } else {
        const last = this.#partNumber;
        await this.#uploadPart(last, this.#buffer!.subarray(0, this.#filled)).catch((error) => {
          this.#failure ??= toStowageError(error);
        });
        await Promise.all(this.#inflight);
        if (this.#failure) throw this.#failure;
        const conditional = !options.replace && this.#conditionalComplete;
        if (!options.replace && !conditional && await this.#provider.objectExists(this.#key)) {
          throw new StowageError("Exists", "already exists");
        }
        await this.#provider.completeMultipart(
          this.#objectKey,
          await this.#uploadId!,
          this.#etags.slice(0, last),
          { ifNoneMatch: conditional },
        );
      }
      this.#state = "committed";
      this.#release();
    } catch (error) {
      this.#state = "open";
      await this.abort();
      throw toStowageError(error);
    }
  }

  #release(): void {
    this.#buffer = null;
    this.#filled = 0;
  }

  async abort(): Promise<void> {
    // A commit in progress cleans up after itself when it fails.
    if (this.#state !== "open") return;
    this.#state = "aborted";
    this.#release();
    await Promise.allSettled([...this.#inflight]);
    if (this.#uploadId === null) return;
    const uploadId = await this.#uploadId.catch(() => null);
    if (uploadId === null) return;
    await this.#provider.abortMultipart(this.#objectKey, uploadId).catch(() => {
      // Unreachable store: the upload stays invisible; sweepUploads removes it later.
    });
  }
}
