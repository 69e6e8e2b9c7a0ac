// HTTP/1.1 response side, shared by the stdio transport and the plain-TCP listener: status line
// and header spelling, an output buffer that coalesces small writes, and response framing.
// Content-Length on every response except 204 (RFC 9110 forbids it there). A body held beside
// the Response (src/http/held_body.ts) goes out with the head in one write. A body with a
// Content-Length from the handler is streamed as is; one that declares up to 64 KiB is collected
// first, so that a failing or mis-sized one becomes a clean 500. A body without one is, by the
// caller's choice, measured (held in memory up to a limit, beyond it spooled into an unlinked temp
// file, then sent with its length: stdio), sent chunked (HTTP/1.1 over TCP) or sent until the
// connection closes (HTTP/1.0). HEAD gets the headers only (a handler's explicit Content-Length
// is kept; without one, the body is counted, not sent).

import { takeHeldBody } from "../http/held_body.ts";
import { returnReadBuffer } from "../storage/read_buffers.ts";
import type { Refusal } from "./h1_read.ts";
import {
  type ByteSink,
  collectDeclaredBody,
  errorText,
  isHopByHop,
  parseContentLength,
} from "./node_bridge.ts";

const OUTPUT_BUFFER = 64 * 1024;
const SPOOL_READ = 256 * 1024;
/** Declared bodies up to this size are collected before the head is written. */
const SMALL_RESPONSE = 64 * 1024;
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

/** Spellings computed so far; handlers use a few dozen names, so the map stays small. */
const spelled = new Map<string, string>(Object.entries(HEADER_SPELLING));
const MAX_SPELLED = 512;

/** Conventional spelling of a lowercase header name (Content-Length, X-BorgStore-Is-Directory). */
export function headerSpelling(name: string): string {
  let spelling = spelled.get(name);
  if (spelling === undefined) {
    spelling = name.replace(
      /(^|-)([a-z])/g,
      (_m, dash: string, c: string) => dash + c.toUpperCase(),
    );
    if (spelled.size < MAX_SPELLED) spelled.set(name, spelling);
  }
  return spelling;
}

/** Coalesces small writes; large ones go straight through. Call flush() after each response. */
export class OutputBuffer {
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

/** How one response is framed on its connection. */
export interface ResponseFraming {
  /** Fields added to the head (Date, Connection), already spelled. */
  extra: [string, string][];
  /**
   * A body without a Content-Length: "measure" reads it whole first (in memory up to
   * `maxBuffered` bytes, beyond that in a temp file), "chunked" streams it with chunked
   * transfer coding, "close" streams it and ends the connection after it (HTTP/1.0).
   */
  unsized: "measure" | "chunked" | "close";
  maxBuffered: number;
  log: (line: string) => void;
}

/**
 * Writes one response. Returns false when the connection must not carry another response: the
 * handler's body broke off before its Content-Length, or a close-delimited body was sent.
 */
export async function writeResponse(
  out: OutputBuffer,
  response: Response,
  isHead: boolean,
  framing: ResponseFraming,
): Promise<boolean> {
  const status = response.status;
  const fields: [string, string][] = [];
  // forEach, not for-of: the same sorted and combined fields, without an iterator object per
  // field (about 1.5 µs less for a usual response)
  response.headers.forEach((value, name) => {
    if (name === "content-length" || isHopByHop(name)) return;
    fields.push([headerSpelling(name), value]);
  });
  for (const field of framing.extra) fields.push(field);
  const declared = parseContentLength(response.headers.get("content-length"));
  const held = takeHeldBody(response);
  const body = response.body;
  const noBody = status === 204 || status === 304;
  const log = framing.log;

  if (held !== undefined && !isHead && !noBody) {
    const inSync = await writeBytesResponse(out, response, fields, held, declared, framing);
    // written out (copied into the output buffer or taken by the socket): nothing refers to it
    returnReadBuffer(held);
    return inSync;
  }

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
      log(`response declared Content-Length ${declared} without a body`);
      return false;
    }
    return true;
  }

  if (declared === null) {
    if (framing.unsized === "measure") {
      return await writeMeasuredResponse(out, response, fields, framing);
    }
    return await writeUnsizedResponse(out, response, fields, framing);
  }

  if (declared <= SMALL_RESPONSE) {
    return await writeSmallResponse(out, response, fields, declared, framing);
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
        log(`response body failed after ${declared - left} bytes: ${errorText(error)}`);
        await out.flush();
        return false;
      }
      if (result.done) break;
      const chunk = result.value;
      if (chunk.length >= left) {
        await out.write(chunk.subarray(0, left));
        if (chunk.length > left) {
          log(`response body longer than its Content-Length ${declared}; truncated`);
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
    log(`response body ended ${left} bytes before its Content-Length ${declared}`);
    return false;
  }
  return true;
}

/** A length-less body read to its end first, then sent with its length. */
async function writeMeasuredResponse(
  out: OutputBuffer,
  response: Response,
  fields: [string, string][],
  framing: ResponseFraming,
): Promise<boolean> {
  let measured: MeasuredBody;
  try {
    measured = await measureBody(response.body!, framing.maxBuffered);
  } catch (error) {
    return await answerBodyFailure(out, error, framing);
  }
  fields.push(["Content-Length", String(measured.length)]);
  await out.write(headBlock(response.status, reasonOf(response), fields));
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

const CRLF = encoder.encode("\r\n");
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/**
 * A length-less body streamed as it comes: chunked, or (HTTP/1.0) until the connection closes.
 * Each piece is flushed, so a slowly produced body (a long listing) reaches the client early.
 * A body that fails midway ends without its last chunk: the client sees it incomplete.
 */
async function writeUnsizedResponse(
  out: OutputBuffer,
  response: Response,
  fields: [string, string][],
  framing: ResponseFraming,
): Promise<boolean> {
  const chunked = framing.unsized === "chunked";
  if (chunked) fields.push(["Transfer-Encoding", "chunked"]);
  await out.write(headBlock(response.status, reasonOf(response), fields));
  const reader = response.body!.getReader();
  try {
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        framing.log(`response body failed midway: ${errorText(error)}`);
        await out.flush();
        return false;
      }
      if (result.done) break;
      const chunk = result.value;
      if (chunk.length === 0) continue;
      if (chunked) await out.write(encoder.encode(chunk.length.toString(16) + "\r\n"));
      await out.write(chunk);
      if (chunked) await out.write(CRLF);
      await out.flush();
    }
  } finally {
    reader.releaseLock();
  }
  if (chunked) await out.write(LAST_CHUNK);
  await out.flush();
  return chunked;
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
  framing: ResponseFraming,
): Promise<boolean> {
  let bytes: Uint8Array | null;
  try {
    bytes = await collectDeclaredBody(response.body!, declared);
  } catch (error) {
    return await answerBodyFailure(out, error, framing);
  }
  return await writeBytesResponse(out, response, fields, bytes, declared, framing);
}

/**
 * Sends a body in hand with its head. One that contradicts the declared length (or was longer
 * than it: null) is a 500 instead, while nothing of it is sent yet.
 */
async function writeBytesResponse(
  out: OutputBuffer,
  response: Response,
  fields: [string, string][],
  bytes: Uint8Array | null,
  declared: number | null,
  framing: ResponseFraming,
): Promise<boolean> {
  if (bytes === null || (declared !== null && bytes.length !== declared)) {
    const what = bytes === null ? "longer than" : `of ${bytes.length} bytes, not`;
    framing.log(`response body ${what} its Content-Length ${declared}`);
    await writeInternalError(out, framing.extra);
    return true;
  }
  fields.push(["Content-Length", String(bytes.length)]);
  await out.write(headBlock(response.status, reasonOf(response), fields));
  await out.write(bytes);
  await out.flush();
  return true;
}

/** A body that failed before anything of it was sent: logged, answered with a 500. */
async function answerBodyFailure(
  out: OutputBuffer,
  error: unknown,
  framing: ResponseFraming,
): Promise<boolean> {
  framing.log(`response body failed before sending: ${errorText(error)}`);
  await writeInternalError(out, framing.extra);
  return true;
}

async function writeInternalError(out: OutputBuffer, extra: [string, string][]): Promise<void> {
  await writeRefusal(out, { status: 500, message: "Internal Server Error" }, extra);
}

/** Writes a short plain-text error answer and flushes it. */
export async function writeRefusal(
  out: OutputBuffer,
  refusal: Refusal,
  extra: [string, string][] = [],
): Promise<void> {
  const text = encoder.encode(refusal.message);
  await out.write(headBlock(refusal.status, REASONS[refusal.status] ?? "Error", [
    ["Content-Type", "text/plain; charset=utf-8"],
    ["Content-Length", String(text.length)],
    ...extra,
  ]));
  await out.write(text);
  await out.flush();
}

/** Writes the interim 100 Continue answer. */
export async function writeContinue(out: OutputBuffer): Promise<void> {
  await out.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
  await out.flush();
}
