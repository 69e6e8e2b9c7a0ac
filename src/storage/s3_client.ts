// The S3 wire layer of the S3 provider: request URLs (path-style or virtual-host), SigV4 signing
// with aws4fetch, Content-MD5 and payload hashes, per-attempt timeouts, bounded retries with
// exponential backoff and jitter for network errors, throttling and 5xx answers, and the one
// table from S3 answers to StowageError kinds. Nothing here knows about directories or uploads.

import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";
import { StowageError } from "../errors.ts";
import { parseErrorBody } from "./s3_xml.ts";

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** For temporary credentials (STS). */
  sessionToken?: string;
}

export interface S3RetryOptions {
  /** Attempts per request, the first one included (default 5). */
  tries?: number;
  /** Delay before the first retry; doubles each time, with jitter (default 200 ms). */
  baseDelayMs?: number;
  /** No retry starts later than this after the first attempt (default 10 000 ms). */
  maxTotalMs?: number;
}

export interface S3ClientOptions {
  /** Scheme, host and port of the service, e.g. `https://s3.eu-west-1.amazonaws.com`. */
  endpoint: string;
  /** Signing region (default "us-east-1"; Ceph RGW accepts any). */
  region?: string;
  bucket: string;
  /**
   * Bucket in the path (`endpoint/bucket/key`) instead of the host name
   * (`bucket.endpoint/key`). Default: path-style when the endpoint host is an IP address or
   * `localhost`, virtual-host style otherwise.
   */
  pathStyle?: boolean;
  credentials: S3Credentials;
  retry?: S3RetryOptions;
  /**
   * Time allowed until a response's headers arrive, per attempt, and between two chunks of an
   * object being read (default 120 000 ms).
   */
  requestTimeoutMs?: number;
  /**
   * Sign the SHA-256 of every request body instead of sending UNSIGNED-PAYLOAD (default false:
   * Content-MD5 already lets the store detect corruption, and TLS or the clients' own
   * encryption and digests protect against tampering). Costs one SHA-256 pass per body.
   */
  signPayload?: boolean;
  /** Replaces the global fetch (tests inject faults with it). */
  fetch?: typeof fetch;
}

export interface S3Request {
  method: "GET" | "HEAD" | "PUT" | "POST" | "DELETE";
  /** Object key in the bucket; undefined addresses the bucket itself. */
  key?: string;
  /** Query parameters in order; "" values are sent as bare names (`?uploads`). */
  query?: Array<[string, string]>;
  headers?: Record<string, string>;
  /** The whole body (always sent with Content-Length; Content-MD5 is added). */
  body?: Uint8Array;
  /** Statuses handed back to the caller instead of being thrown (e.g. 404, 412, 416). */
  accept?: number[];
  /** What the request is about, for error details (default: method and key). */
  what?: string;
  /** Read the (small) answer body as text inside the retry loop (into `S3Answer.text`). */
  readText?: boolean;
}

export interface S3Answer {
  /** The response; its body is already consumed when `readText` was set. */
  response: Response;
  /** The body text when `readText` was set, else "". */
  text: string;
  /** How many attempts it took (a 412 after a retry may be the echo of our own success). */
  attempts: number;
}

/** One failed attempt, kept for the final error's detail. */
interface AttemptFailure {
  status: number;
  code: string;
  message: string;
}

const RETRYABLE_CODES = new Set([
  "SlowDown",
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
  "BadDigest",
  "XAmzContentSHA256Mismatch",
  "OperationAborted",
]);

const RFC3986_EXTRA = /[!'()*]/g;

/** Percent-encodes one URI component strictly (RFC 3986 unreserved characters stay). */
export function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    RFC3986_EXTRA,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Encodes an object key for a URL path: every segment strictly, the slashes kept. */
export function encodeKeyPath(key: string): string {
  return key.split("/").map(encodeRfc3986).join("/");
}

export function md5Base64(data: Uint8Array): string {
  return createHash("md5").update(data).digest("base64");
}

export function md5Hex(data: Uint8Array): string {
  return createHash("md5").update(data).digest("hex");
}

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function isIpOrLocal(hostname: string): boolean {
  return hostname === "localhost" || /^\d+\.\d+\.\d+\.\d+$/.test(hostname) ||
    hostname.startsWith("[");
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class S3Client {
  readonly bucket: string;
  readonly region: string;
  readonly pathStyle: boolean;
  readonly endpoint: URL;
  readonly #aws: AwsClient;
  readonly #tries: number;
  readonly #baseDelayMs: number;
  readonly #maxTotalMs: number;
  /** Time allowed for response headers, and between two chunks of a streamed body. */
  readonly timeoutMs: number;
  readonly #signPayload: boolean;
  readonly #fetch: typeof fetch;

  constructor(options: S3ClientOptions) {
    let endpoint: URL;
    try {
      endpoint = new URL(options.endpoint);
    } catch {
      throw new TypeError(`S3 endpoint is not a URL: ${options.endpoint}`);
    }
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
      throw new TypeError(`S3 endpoint must be http:// or https://: ${options.endpoint}`);
    }
    if (endpoint.search !== "" || endpoint.hash !== "") {
      throw new TypeError(`S3 endpoint must not have a query or fragment: ${options.endpoint}`);
    }
    if (!/^[A-Za-z0-9._-]{1,255}$/.test(options.bucket)) {
      throw new TypeError(`invalid S3 bucket name: ${JSON.stringify(options.bucket)}`);
    }
    const { accessKeyId, secretAccessKey, sessionToken } = options.credentials ?? {};
    if (!accessKeyId || !secretAccessKey) {
      throw new TypeError("S3 credentials need an access key ID and a secret access key");
    }
    this.endpoint = endpoint;
    this.bucket = options.bucket;
    this.region = options.region || "us-east-1";
    this.pathStyle = options.pathStyle ?? isIpOrLocal(endpoint.hostname);
    if (!this.pathStyle && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket)) {
      throw new TypeError(
        `bucket ${options.bucket} cannot be a host name: use path-style addressing`,
      );
    }
    this.#aws = new AwsClient({
      accessKeyId,
      secretAccessKey,
      sessionToken,
      service: "s3",
      region: this.region,
      retries: 0,
    });
    this.#tries = Math.max(1, options.retry?.tries ?? 5);
    this.#baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 200);
    this.#maxTotalMs = Math.max(0, options.retry?.maxTotalMs ?? 10_000);
    this.timeoutMs = Math.max(1, options.requestTimeoutMs ?? 120_000);
    this.#signPayload = options.signPayload ?? false;
    this.#fetch = options.fetch ?? fetch;
  }

  /** `endpoint/bucket` or `bucket.endpoint`, without a trailing slash (for logs). */
  get location(): string {
    return this.#base().replace(/\/$/, "");
  }

  #base(): string {
    const path = this.endpoint.pathname.replace(/\/+$/, "");
    if (this.pathStyle) {
      return `${this.endpoint.protocol}//${this.endpoint.host}${path}/${
        encodeRfc3986(this.bucket)
      }/`;
    }
    return `${this.endpoint.protocol}//${this.bucket}.${this.endpoint.host}${path}/`;
  }

  /** The URL of a request (exported for tests of the request builder). */
  url(key: string | undefined, query: Array<[string, string]> = []): string {
    let url = this.#base();
    if (key !== undefined) url += encodeKeyPath(key);
    if (query.length > 0) {
      url += "?" + query.map(([k, v]) => (v === "" ? encodeRfc3986(k) : (
        `${encodeRfc3986(k)}=${encodeRfc3986(v)}`
      ))).join("&");
    }
    return url;
  }

  /** The value of `x-amz-copy-source` for an object of this bucket. */
  copySource(key: string): string {
    return `/${encodeRfc3986(this.bucket)}/${encodeKeyPath(key)}`;
  }

  /** Builds the signed Request of one attempt (exported for tests of the request builder). */
  async signed(request: S3Request, signal?: AbortSignal): Promise<Request> {
    const headers: Record<string, string> = { ...request.headers };
    const body = request.body;
    if (body !== undefined) {
      // fetch sends Content-Length for a byte array body (Ceph answers 411 without it).
      if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-md5")) {
        headers["content-md5"] = md5Base64(body);
      }
    }
    headers["x-amz-content-sha256"] = this.#signPayload
      ? sha256Hex(body ?? new Uint8Array(0))
      : "UNSIGNED-PAYLOAD";
    return await this.#aws.sign(this.url(request.key, request.query), {
      method: request.method,
      headers,
      body: body as BodyInit | undefined,
      signal,
    });
  }

  #what(request: S3Request): string {
    return request.what ?? `${request.method} ${request.key ?? "(bucket)"}`;
  }

  /**
   * Sends a request, retrying network errors, timeouts, 429, 5xx and S3's retryable error codes
   * with exponential backoff (bounded in tries and total time). Answers with a 2xx status or a
   * status listed in `accept`; anything else throws a StowageError (see `s3Error`). The caller
   * must consume or cancel the response body.
   */
  async send(request: S3Request): Promise<S3Answer> {
    const started = Date.now();
    let failure: AttemptFailure | null = null;
    let networkError: unknown = null;
    for (let attempt = 1;; attempt++) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error("timed out")), this.timeoutMs);
      let response: Response | null = null;
      let text = "";
      let ok = false;
      try {
        response = await this.#fetch(await this.signed(request, controller.signal));
        ok = (response.status >= 200 && response.status < 300) ||
          (request.accept?.includes(response.status) ?? false);
        if (!ok || request.readText) {
          text = request.method === "HEAD" ? "" : await response.text();
        }
      } catch (error) {
        if (response !== null) await response.body?.cancel().catch(() => {});
        response = null;
        networkError = controller.signal.aborted
          ? new Error(`no answer within ${this.timeoutMs} ms`)
          : error;
        failure = null;
      } finally {
        clearTimeout(timer);
      }
      if (response !== null) {
        if (ok) return { response, text, attempts: attempt };
        const { code, message } = parseErrorBody(text);
        failure = { status: response.status, code, message };
        networkError = null;
        // With a signed payload, RGW reports a body damaged in transit as a signature mismatch.
        const damaged = this.#signPayload && failure.code === "SignatureDoesNotMatch" &&
          (request.body?.byteLength ?? 0) > 0;
        if (!damaged && !isRetryable(failure)) {
          throw s3Error(failure, this.#what(request), this.location);
        }
      }
      const delay = this.#delay(attempt);
      if (attempt >= this.#tries || Date.now() - started + delay > this.#maxTotalMs) break;
      await sleep(delay);
    }
    if (failure !== null) throw s3Error(failure, this.#what(request), this.location);
    const reason = networkReason(networkError);
    throw new StowageError("Unavailable", "object store unavailable", {
      detail: `s3 ${this.#what(request)}: cannot reach ${this.location}: ${reason}`,
      cause: networkError,
    });
  }

  /** Full jitter over an exponentially growing window. */
  #delay(attempt: number): number {
    const window = this.#baseDelayMs * 2 ** (attempt - 1);
    return Math.round(window / 2 + Math.random() * window / 2);
  }
}

/** The most telling text of a fetch failure ("fetch failed" hides the reason in its cause). */
function networkReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : "";
  const inner = /: ([^:]*\(os error \d+\))$/.exec(cause)?.[1] ??
    /tcp connect error: (.*)$/.exec(cause)?.[1];
  return inner ?? (cause || error.message);
}

function isRetryable(failure: AttemptFailure): boolean {
  return failure.status >= 500 || failure.status === 429 || RETRYABLE_CODES.has(failure.code);
}

/** Maps a final S3 failure to a StowageError; `detail` names the request and the answer. */
export function s3Error(
  failure: { status: number; code: string; message?: string },
  what: string,
  location: string,
): StowageError {
  const { status, code } = failure;
  const detail = `s3 ${what}: ${status}${code ? ` ${code}` : ""}${
    failure.message ? ` (${failure.message})` : ""
  } from ${location}`;
  if (status === 507 || code === "EntityTooLarge" || code === "QuotaExceeded") {
    return new StowageError("QuotaExceeded", "insufficient storage", { detail });
  }
  if (status >= 500 || status === 429 || code === "SlowDown") {
    return new StowageError("Unavailable", "object store unavailable", { detail });
  }
  if (code === "NoSuchBucket") {
    return new StowageError("Internal", "object store bucket missing", { detail });
  }
  if (status === 404) return new StowageError("NotFound", "not found", { detail });
  if (status === 412) return new StowageError("Exists", "already exists", { detail });
  if (status === 416) return new StowageError("BadRange", "range not satisfiable", { detail });
  if (status === 403 || status === 401) {
    return new StowageError("Internal", "object store denied access", {
      detail: `${detail}: check the credentials, the bucket policy and the clock`,
    });
  }
  if (code === "BadDigest" || code === "InvalidDigest" || code === "XAmzContentSHA256Mismatch") {
    return new StowageError("Internal", "object store rejected the content digest", { detail });
  }
  return new StowageError("Internal", "object store error", { detail });
}
