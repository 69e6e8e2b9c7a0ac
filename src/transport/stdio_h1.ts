// HTTP/1.1 over a pipe pair (stdin → requests, stdout → responses), borgstore's `--stdio` mode.
// Owns: parsing the request line and headers (limits: request line ≤ 64 KiB → 414; ≤ 100 header
// lines of ≤ 64 KiB each → 431), body framing (Content-Length or chunked), the request body as a
// stream read on demand (never buffered whole), discarding whatever the handler left unread so the
// next request starts in sync, and response framing. One request at a time, keep-alive always
// (`Connection: close` is ignored); resolves at EOF on a request boundary.
//
// Response framing: status line, headers, and Content-Length on every response except 204 (RFC
// 9110 forbids it there; the client reads a missing length as 0). Never chunked, never compressed.
// A body with a Content-Length from the handler is streamed as is; one that declares up to 64 KiB
// is collected first, so that a failing or mis-sized one becomes a clean 500. A body without one
// is read into memory up to `maxBufferedResponse` bytes (default 16 MiB) to learn its length; a
// longer one is spooled into an unlinked temp file (Deno.makeTempFile) and then streamed out from
// there. HEAD gets the headers only (a handler's explicit Content-Length is kept; without one, the
// body is counted, not sent). Output is written with loops over partial writes, coalesced and flushed at
// the end of each response. Logs go to `log` (default stderr), never to the output.

import type { Handler, RequestInfo } from "../http/types.ts";
import {
  type ByteReader,
  type ByteSink,
  byteSink,
  type ByteWriter,
  collectDeclaredBody,
  concatBytes,
  errorText,
  isHopByHop,
  makeRequest,
  parseContentLength,
  requestUrl,
  stderrLog,
} from "./node_bridge.ts";

export type { ByteReader, ByteWriter };

export interface StdioHttp1Options {
  /** Request bytes (default: stdin). */
  input?: ReadableStream<Uint8Array> | ByteReader;
  /** Response bytes (default: stdout). */
  output?: WritableStream<Uint8Array> | ByteWriter;
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
  /** Largest length-less response body held in memory before spooling to a temp file. */
  maxBufferedResponse?: number;
}

export const MAX_REQUEST_LINE = 64 * 1024;
export const MAX_HEADER_LINE = 64 * 1024;
export const MAX_HEADERS = 100;
const MAX_CHUNK_SIZE_LINE = 4096;
const DEFAULT_MAX_BUFFERED_RESPONSE = 16 * 1024 * 1024;
const MAX_BODY_PIECE = 1024 * 1024;
const READ_SLAB = 64 * 1024;
const MIN_READ_ROOM = 16 * 1024;
const OUTPUT_BUFFER = 64 * 1024;
const SPOOL_READ = 256 * 1024;
/** Declared bodies up to this size are collected before the head is written. */
const SMALL_RESPONSE = 64 * 1024;
const EMPTY = new Uint8Array(0);
const INFO: RequestInfo = { remoteAddr: "stdio-client", transport: "stdio" };
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const encoder = new TextEncoder();

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  422: "Unprocessable Content",
  423: "Locked",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};

/** Header names whose conventional spelling is not plain Title-Case. */
const HEADER_SPELLING: Record<string, string> = {
  "etag": "ETag",
  "www-authenticate": "WWW-Authenticate",
  "x-borgstore-is-directory": "X-BorgStore-Is-Directory",
  "x-content-hash-sha256": "X-Content-hash-sha256",
};

/** Conventional spelling of a lowercase header name (Content-Length, X-BorgStore-Is-Directory). */
export function headerSpelling(name: string): string {
  return HEADER_SPELLING[name] ??
    name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    // apply, not spread: spreading a typed array walks its iterator (about 5× slower per head)
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Input

type LineResult =
  | { kind: "line"; text: string }
  | { kind: "too-long"; prefix: string }
  | { kind: "eof"; partial: boolean };

/** Buffered access to the input: lines for heads, zero-copy pieces for bodies. */
export class InputBuffer {
  #next: () => Promise<Uint8Array | null>;
  #release: () => void;
  #pending: Uint8Array = EMPTY;
  #eof = false;

  constructor(input: ReadableStream<Uint8Array> | ByteReader) {
    if (input instanceof ReadableStream) {
      const reader = input.getReader();
      this.#next = async () => {
        const { value, done } = await reader.read();
        return done ? null : value;
      };
      this.#release = () => reader.releaseLock();
    } else {
      // Reads fill a slab front to back; a piece handed out keeps referring to its part of the
      // slab, which is never written again. A new slab is taken when little room is left, so a
      // small request does not cost a fresh 64 KiB buffer.
      let slab = new Uint8Array(READ_SLAB);
      let used = 0;
      this.#next = async () => {
        if (slab.length - used < MIN_READ_ROOM) {
          slab = new Uint8Array(READ_SLAB);
          used = 0;
        }
        const n = await input.read(slab.subarray(used));
        if (n === null) return null;
        const piece = slab.subarray(used, used + n);
        used += n;
        return piece;
      };
      this.#release = () => {};
    }
  }

  async #fill(): Promise<boolean> {
    while (!this.#eof) {
      const chunk = await this.#next();
      if (chunk === null) this.#eof = true;
      else if (chunk.length > 0) {
        this.#pending = chunk;
        return true;
      }
    }
    return false;
  }

  /**
   * One line without its LF (and CR). A line longer than `limit` is read to its end and thrown
   * away without being held, and reported with the first bytes of it.
   */
  async readLine(limit: number): Promise<LineResult> {
    const parts: Uint8Array[] = [];
    let total = 0;
    let prefix: string | null = null;
    while (true) {
      if (this.#pending.length === 0 && !(await this.#fill())) {
        return { kind: "eof", partial: total > 0 || prefix !== null };
      }
      const pending = this.#pending;
      const lf = pending.indexOf(10);
      const piece = lf >= 0 ? pending.subarray(0, lf) : pending;
      this.#pending = lf >= 0 ? pending.subarray(lf + 1) : EMPTY;
      if (prefix === null) {
        if (total + piece.length > limit + 1) {
          prefix = latin1(concatBytes([...parts, piece], total + piece.length).subarray(0, 64));
          parts.length = 0;
        } else {
          parts.push(piece);
          total += piece.length;
        }
      }
      if (lf < 0) continue;
      if (prefix !== null) return { kind: "too-long", prefix };
      let line = parts.length === 1 ? parts[0] : concatBytes(parts, total);
      if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      if (line.length > limit) return { kind: "too-long", prefix: latin1(line.subarray(0, 64)) };
      return { kind: "line", text: latin1(line) };
    }
  }

  /** Up to `max` (≥ 1) bytes without copying; null at EOF. */
  async take(max: number): Promise<Uint8Array | null> {
    if (this.#pending.length === 0 && !(await this.#fill())) return null;
    const pending = this.#pending;
    if (pending.length <= max) {
      this.#pending = EMPTY;
      return pending;
    }
    this.#pending = pending.subarray(max);
    return pending.subarray(0, max);
  }

  release(): void {
    try {
      this.#release();
    } catch {
      // a read is still pending; the process is ending anyway
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Request heads

export type Framing = { kind: "length"; length: number } | { kind: "chunked" };

/** An error answer: status and a short text. */
interface Refusal {
  status: number;
  message: string;
}

export type RequestHead =
  | { kind: "eof"; partial: boolean }
  /** Unrecoverable: answer `refusal`, then stop (the input can no longer be framed). */
  | { kind: "fatal"; refusal: Refusal }
  | {
    kind: "request";
    method: string;
    target: string;
    headers: [string, string][];
    framing: Framing;
    /** Set when the request is refused by the parser; its body is still skipped. */
    refusal: Refusal | null;
  };

const FRAMING_NAMES = /^\s*(content-length|transfer-encoding)\s*:/i;

/** Reads one request head: request line, header lines, blank line. */
export async function readRequestHead(input: InputBuffer): Promise<RequestHead> {
  let requestLine: LineResult;
  // RFC 9112 §2.2: ignore empty lines before the request line.
  for (let blanks = 0;; blanks++) {
    requestLine = await input.readLine(MAX_REQUEST_LINE);
    if (requestLine.kind !== "line" || requestLine.text !== "" || blanks >= 16) break;
  }
  if (requestLine.kind === "eof") return requestLine;

  let refusal: Refusal | null = null;
  let method = "";
  let target = "";
  if (requestLine.kind === "too-long") {
    refusal = { status: 414, message: "request line too long" };
  } else {
    const parts = requestLine.text.split(" ");
    const version = parts[parts.length - 1];
    if (!/^HTTP\/\d\.\d$/.test(version)) {
      // not a request line at all: the input cannot be trusted to frame anything
      return { kind: "fatal", refusal: { status: 400, message: "malformed request line" } };
    }
    if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
      return { kind: "fatal", refusal: { status: 505, message: "HTTP version not supported" } };
    }
    if (parts.length !== 3 || !TOKEN.test(parts[0]) || parts[1] === "") {
      refusal = { status: 400, message: "malformed request line" };
    } else {
      method = parts[0];
      target = parts[1];
    }
  }

  const headers: [string, string][] = [];
  const lengths: string[] = [];
  const codings: string[] = [];
  let count = 0;
  while (true) {
    const line = await input.readLine(MAX_HEADER_LINE);
    if (line.kind === "eof") return { kind: "eof", partial: true };
    if (line.kind === "too-long") {
      if (FRAMING_NAMES.test(line.prefix)) {
        return { kind: "fatal", refusal: { status: 431, message: "header line too long" } };
      }
      refusal ??= { status: 431, message: "header line too long" };
      continue;
    }
    if (line.text === "") break;
    count++;
    if (count > MAX_HEADERS) refusal ??= { status: 431, message: "too many header lines" };
    const colon = line.text.indexOf(":");
    const name = colon > 0 ? line.text.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      if (FRAMING_NAMES.test(line.text)) {
        return { kind: "fatal", refusal: { status: 400, message: "malformed header line" } };
      }
      // includes obsolete line folding (RFC 9112 §5.2: reject)
      refusal ??= { status: 400, message: "malformed header line" };
      continue;
    }
    const value = line.text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    const lower = name.toLowerCase();
    if (lower === "content-length") lengths.push(value);
    else if (lower === "transfer-encoding") codings.push(value);
    if (count <= MAX_HEADERS) headers.push([name, value]);
  }

  const framing = decideFraming(lengths, codings);
  if ("status" in framing) return { kind: "fatal", refusal: framing };
  return { kind: "request", method, target, headers, framing, refusal };
}

function decideFraming(lengths: string[], codings: string[]): Framing | Refusal {
  if (codings.length > 0) {
    if (lengths.length > 0) {
      return { status: 400, message: "both Transfer-Encoding and Content-Length" };
    }
    const list = codings.join(",").split(",").map((c) => c.trim().toLowerCase()).filter((c) => c);
    if (list.length === 1 && list[0] === "chunked") return { kind: "chunked" };
    return { status: 501, message: "unsupported Transfer-Encoding" };
  }
  if (lengths.length === 0) return { kind: "length", length: 0 };
  let length: number | null = null;
  for (const value of lengths.join(",").split(",")) {
    const trimmed = value.trim();
    if (!/^\d{1,16}$/.test(trimmed) || !Number.isSafeInteger(Number(trimmed))) {
      return { status: 400, message: "invalid Content-Length" };
    }
    if (length !== null && Number(trimmed) !== length) {
      return { status: 400, message: "conflicting Content-Length" };
    }
    length = Number(trimmed);
  }
  return { kind: "length", length: length ?? 0 };
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/** One request's body, read from the input on demand according to its framing. */
export class RequestBody {
  #input: InputBuffer;
  #framing: Framing;
  #remaining: number;
  #chunkLeft = 0;
  #chunkNeedsCrlf = false;
  #state: "open" | "done" | "broken" = "open";
  #busy: Promise<unknown> = Promise.resolve();
  #detached = false;

  constructor(input: InputBuffer, framing: Framing) {
    this.#input = input;
    this.#framing = framing;
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    if (framing.kind === "length" && framing.length === 0) this.#state = "done";
  }

  /** True when there may be body bytes (a Content-Length > 0 or chunked). */
  get present(): boolean {
    return this.#framing.kind === "chunked" || this.#remaining > 0;
  }

  /** True when the input ended inside the body or the chunked framing was malformed. */
  get broken(): boolean {
    return this.#state === "broken";
  }

  #fail(message: string): never {
    this.#state = "broken";
    throw new Error(message);
  }

  async #read(): Promise<Uint8Array | null> {
    if (this.#state === "done") return null;
    if (this.#state === "broken") throw new Error("request body is broken");
    if (this.#framing.kind === "length") {
      const piece = await this.#input.take(Math.min(this.#remaining, MAX_BODY_PIECE));
      if (piece === null) this.#fail("unexpected end of input inside the request body");
      this.#remaining -= piece.length;
      if (this.#remaining === 0) this.#state = "done";
      return piece;
    }
    while (true) {
      if (this.#chunkLeft > 0) {
        const piece = await this.#input.take(Math.min(this.#chunkLeft, MAX_BODY_PIECE));
        if (piece === null) this.#fail("unexpected end of input inside the request body");
        this.#chunkLeft -= piece.length;
        if (this.#chunkLeft === 0) this.#chunkNeedsCrlf = true;
        return piece;
      }
      if (this.#chunkNeedsCrlf) {
        const end = await this.#input.readLine(MAX_CHUNK_SIZE_LINE);
        if (end.kind === "eof") this.#fail("unexpected end of input inside the request body");
        if (end.kind !== "line" || end.text !== "") this.#fail("malformed chunked request body");
        this.#chunkNeedsCrlf = false;
      }
      const line = await this.#input.readLine(MAX_CHUNK_SIZE_LINE);
      if (line.kind === "eof") this.#fail("unexpected end of input inside the request body");
      const match = line.kind === "line"
        ? /^([0-9A-Fa-f]{1,13})[ \t]*(;.*)?$/.exec(line.text)
        : null;
      if (match === null) this.#fail("malformed chunk size line");
      const size = parseInt(match[1], 16);
      if (size > 0) {
        this.#chunkLeft = size;
        continue;
      }
      // last chunk: trailer fields up to the blank line, ignored
      for (let trailers = 0;; trailers++) {
        const trailer = await this.#input.readLine(MAX_HEADER_LINE);
        if (trailer.kind === "eof") this.#fail("unexpected end of input inside the request body");
        if (trailer.kind === "line" && trailer.text === "") break;
        if (trailers >= MAX_HEADERS) this.#fail("too many trailer lines");
      }
      this.#state = "done";
      return null;
    }
  }

  /** The body as a web stream; a piece is read from the input only when the consumer pulls. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (this.#detached) {
          controller.error(new Error("request body no longer available"));
          return;
        }
        const next = this.#read();
        this.#busy = next.catch(() => {});
        try {
          const piece = await next;
          if (piece === null) controller.close();
          else controller.enqueue(piece);
        } catch (error) {
          controller.error(error);
        }
      },
      // whatever the consumer leaves is discarded after the response
    }, { highWaterMark: 0 });
  }

  /** Reads and drops whatever nobody read. Returns false if the input is no longer in sync. */
  async discard(): Promise<boolean> {
    // wait until no read started by the web stream is in flight, then take the input over
    while (true) {
      const busy = this.#busy;
      await busy;
      if (busy === this.#busy) break;
    }
    this.#detached = true;
    try {
      while ((await this.#read()) !== null) {
        // dropped
      }
      return true;
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Output

/** Coalesces small writes; large ones go straight through. Call flush() after each response. */
class OutputBuffer {
  #sink: ByteSink;
  #buffer = new Uint8Array(OUTPUT_BUFFER);
  #used = 0;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.length <= this.#buffer.length) {
      this.#buffer.set(bytes, this.#used);
      this.#used += bytes.length;
      return;
    }
    await this.flush();
    if (bytes.length < this.#buffer.length / 2) {
      this.#buffer.set(bytes, 0);
      this.#used = bytes.length;
    } else {
      await this.#sink.write(bytes);
    }
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const used = this.#used;
    this.#used = 0;
    await this.#sink.write(this.#buffer.subarray(0, used));
  }
}

/** A length-less body read to its end: in memory, or spooled into an unlinked temp file. */
type MeasuredBody =
  | { kind: "memory"; chunks: Uint8Array[]; length: number }
  | { kind: "file"; file: Deno.FsFile; length: number };

async function writeFileAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

async function measureBody(body: ReadableStream<Uint8Array>, limit: number): Promise<MeasuredBody> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  let file: Deno.FsFile | null = null;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (file === null && length + value.length > limit) {
        const path = await Deno.makeTempFile({ prefix: "stowage-response-" });
        file = await Deno.open(path, { read: true, write: true });
        await Deno.remove(path);
        for (const chunk of chunks) await writeFileAll(file, chunk);
        chunks.length = 0;
      }
      if (file !== null) await writeFileAll(file, value);
      else chunks.push(value);
      length += value.length;
    }
  } catch (error) {
    file?.close();
    throw error;
  } finally {
    reader.releaseLock();
  }
  if (file === null) return { kind: "memory", chunks, length };
  await file.seek(0, Deno.SeekMode.Start);
  return { kind: "file", file, length };
}

async function countBody(body: ReadableStream<Uint8Array>): Promise<number> {
  let length = 0;
  for await (const chunk of body) length += chunk.length;
  return length;
}

function headBlock(status: number, reason: string, fields: [string, string][]): Uint8Array {
  let text = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [name, value] of fields) text += `${name}: ${value}\r\n`;
  return encoder.encode(text + "\r\n");
}

function reasonOf(response: Response): string {
  const text = response.statusText;
  if (text && !/[\r\n]/.test(text)) return text;
  return REASONS[response.status] ?? "Unknown";
}

/**
 * Writes one response. Returns false when the output no longer frames correctly (the handler's
 * body broke off before its Content-Length): the server must stop then.
 */
async function writeResponse(
  out: OutputBuffer,
  response: Response,
  isHead: boolean,
  maxBuffered: number,
  log: (line: string) => void,
): Promise<boolean> {
  const status = response.status;
  const fields: [string, string][] = [];
  for (const [name, value] of response.headers) {
    if (name === "content-length" || isHopByHop(name)) continue;
    fields.push([headerSpelling(name), value]);
  }
  const declared = parseContentLength(response.headers.get("content-length"));
  const body = response.body;
  const noBody = status === 204 || status === 304;

  if (isHead || noBody) {
    let length = declared;
    if (length === null && !noBody) length = body === null ? 0 : await countBody(body);
    else await body?.cancel().catch(() => {});
    if (length !== null && status !== 204) fields.push(["Content-Length", String(length)]);
    await out.write(headBlock(status, reasonOf(response), fields));
    await out.flush();
    return true;
  }

  if (body === null) {
    fields.push(["Content-Length", String(declared ?? 0)]);
    await out.write(headBlock(status, reasonOf(response), fields));
    await out.flush();
    if (declared !== null && declared > 0) {
      log(`stdio: response declared Content-Length ${declared} without a body`);
      return false;
    }
    return true;
  }

  if (declared === null) {
    let measured: MeasuredBody;
    try {
      measured = await measureBody(body, maxBuffered);
    } catch (error) {
      log(`stdio: response body failed before sending: ${errorText(error)}`);
      await writeInternalError(out);
      return true;
    }
    fields.push(["Content-Length", String(measured.length)]);
    await out.write(headBlock(status, reasonOf(response), fields));
    if (measured.kind === "memory") {
      for (const chunk of measured.chunks) await out.write(chunk);
    } else {
      try {
        const buffer = new Uint8Array(SPOOL_READ);
        let left = measured.length;
        while (left > 0) {
          const n = await measured.file.read(buffer.subarray(0, Math.min(left, buffer.length)));
          if (n === null) throw new Error("spooled response ended early");
          await out.write(buffer.subarray(0, n));
          left -= n;
        }
      } finally {
        measured.file.close();
      }
    }
    await out.flush();
    return true;
  }

  if (declared <= SMALL_RESPONSE) {
    return await writeSmallResponse(out, response, fields, declared, log);
  }

  fields.push(["Content-Length", String(declared)]);
  await out.write(headBlock(status, reasonOf(response), fields));
  const reader = body.getReader();
  let left = declared;
  try {
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        log(`stdio: response body failed after ${declared - left} bytes: ${errorText(error)}`);
        await out.flush();
        return false;
      }
      if (result.done) break;
      const chunk = result.value;
      if (chunk.length >= left) {
        await out.write(chunk.subarray(0, left));
        if (chunk.length > left) {
          log(`stdio: response body longer than its Content-Length ${declared}; truncated`);
        }
        left = 0;
        await reader.cancel().catch(() => {});
        break;
      }
      await out.write(chunk);
      left -= chunk.length;
    }
  } finally {
    reader.releaseLock();
  }
  await out.flush();
  if (left > 0) {
    log(`stdio: response body ended ${left} bytes before its Content-Length ${declared}`);
    return false;
  }
  return true;
}

/**
 * A body that declares at most SMALL_RESPONSE bytes is collected first (never more than that), so
 * a body that fails or does not match its Content-Length becomes a 500 while nothing is sent yet,
 * and the connection stays in sync.
 */
async function writeSmallResponse(
  out: OutputBuffer,
  response: Response,
  fields: [string, string][],
  declared: number,
  log: (line: string) => void,
): Promise<boolean> {
  let bytes: Uint8Array | null;
  try {
    bytes = await collectDeclaredBody(response.body!, declared);
  } catch (error) {
    log(`stdio: response body failed before sending: ${errorText(error)}`);
    await writeInternalError(out);
    return true;
  }
  if (bytes === null || bytes.length !== declared) {
    const what = bytes === null ? "longer than" : `of ${bytes.length} bytes, not`;
    log(`stdio: response body ${what} its Content-Length ${declared}`);
    await writeInternalError(out);
    return true;
  }
  fields.push(["Content-Length", String(declared)]);
  await out.write(headBlock(response.status, reasonOf(response), fields));
  await out.write(bytes);
  await out.flush();
  return true;
}

async function writeInternalError(out: OutputBuffer): Promise<void> {
  const text = encoder.encode("Internal Server Error");
  await out.write(headBlock(500, REASONS[500], [
    ["Content-Type", "text/plain; charset=utf-8"],
    ["Content-Length", String(text.length)],
  ]));
  await out.write(text);
  await out.flush();
}

async function writeRefusal(out: OutputBuffer, refusal: Refusal): Promise<void> {
  const text = encoder.encode(refusal.message);
  await out.write(headBlock(refusal.status, REASONS[refusal.status] ?? "Error", [
    ["Content-Type", "text/plain; charset=utf-8"],
    ["Content-Length", String(text.length)],
  ]));
  await out.write(text);
  await out.flush();
}

// ---------------------------------------------------------------------------------------------
// The server loop

/**
 * Serves HTTP/1.1 requests from `input` (default stdin) one after the other, writing responses
 * to `output` (default stdout). Resolves at EOF on a request boundary, or after a request that
 * leaves the input unframeable (EOF inside a body, malformed framing), or when the output is gone.
 */
export async function serveStdioHttp1(
  handler: Handler,
  options: StdioHttp1Options = {},
): Promise<void> {
  const log = options.log ?? stderrLog;
  const maxBuffered = options.maxBufferedResponse ?? DEFAULT_MAX_BUFFERED_RESPONSE;
  const input = new InputBuffer(options.input ?? Deno.stdin.readable);
  const sink = byteSink(options.output ?? Deno.stdout);
  const out = new OutputBuffer(sink);
  try {
    while (true) {
      const head = await readRequestHead(input);
      if (head.kind === "eof") {
        if (head.partial) log("stdio: input ended inside a request head");
        return;
      }
      if (head.kind === "fatal") {
        log(`stdio: ${head.refusal.message}; stopping`);
        await writeRefusal(out, head.refusal);
        return;
      }
      const body = new RequestBody(input, head.framing);
      if (!(await serveOne(handler, head, body, out, maxBuffered, log))) return;
      if (!(await body.discard())) {
        log("stdio: input ended or broke inside a request body; stopping");
        return;
      }
    }
  } catch (error) {
    // output failures (the client closed its end) land here
    log(`stdio: stopping: ${errorText(error)}`);
  } finally {
    input.release();
    await sink.close();
  }
}

/** Answers one parsed request. Returns false when the output is out of sync. */
async function serveOne(
  handler: Handler,
  head: Extract<RequestHead, { kind: "request" }>,
  body: RequestBody,
  out: OutputBuffer,
  maxBuffered: number,
  log: (line: string) => void,
): Promise<boolean> {
  let refusal = head.refusal;
  let request: Request | null = null;
  if (refusal === null) {
    const url = requestUrl("http://stdio", head.target);
    if (url === null) refusal = { status: 400, message: "unsupported request target" };
    else {
      try {
        const hasBody = body.present && head.method !== "GET" && head.method !== "HEAD";
        request = makeRequest(url, head.method, head.headers, hasBody ? body.stream() : null);
      } catch {
        refusal = { status: 400, message: "invalid request" };
      }
    }
  }
  if (refusal !== null || request === null) {
    await writeRefusal(out, refusal ?? { status: 400, message: "invalid request" });
    return true;
  }

  const expect = request.headers.get("expect");
  if (expect !== null && expect.toLowerCase() === "100-continue" && body.present) {
    await out.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    await out.flush();
  }

  let response: Response;
  try {
    response = await handler(request, INFO);
  } catch (error) {
    log(`stdio: handler failed: ${errorText(error)}`);
    response = new Response("Internal Server Error", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  return await writeResponse(out, response, head.method === "HEAD", maxBuffered, log);
}
