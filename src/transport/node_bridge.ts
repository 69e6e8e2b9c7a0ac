// Conversions between node:http / node:http2 objects and web Request/Response parts, shared by
// the fd (socket activation) and stdio HTTP/2 transports: request targets made safe for the URL
// parser, header maps, a node Readable as a streaming web body with backpressure, and a web body
// written to a node Writable with backpressure. Also the byte-writing helpers stdio uses.

import type { Readable, Writable } from "node:stream";

/** Anything with Deno.Writer's `write` (may write fewer bytes than given). */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** Anything with Deno.Reader's `read` (null at EOF). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Where log lines go when a transport is not given a logger: stderr, never stdout. */
export function stderrLog(line: string): void {
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(line.endsWith("\n") ? line : line + "\n"));
  } catch {
    // stderr gone: nothing sensible left to do with a log line
  }
}

/** Short text for a thrown value, for log lines. */
export function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Writes all of `bytes`, looping over partial writes. */
export async function writeAll(writer: ByteWriter, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const n = await writer.write(bytes.subarray(offset));
    if (n <= 0) throw new Error("output accepted no bytes");
    offset += n;
  }
}

/** A sink that writes every byte it is given before its promise resolves. */
export interface ByteSink {
  /** The caller may reuse `bytes` once the promise resolved. */
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Turns a WritableStream or a Deno.Writer-like object into a ByteSink. */
export function byteSink(output: WritableStream<Uint8Array> | ByteWriter): ByteSink {
  // told apart by shape, as InputBuffer does: no touch of the WritableStream global
  if ("getWriter" in output) {
    const writer = output.getWriter();
    return {
      // A WritableStream may keep the chunk after write() resolved: hand it a copy.
      write: (bytes) => writer.write(bytes.slice()),
      close: async () => {
        try {
          await writer.close();
        } catch {
          // already closed or errored
        }
      },
    };
  }
  return { write: (bytes) => writeAll(output, bytes), close: () => Promise.resolve() };
}

const HEX = "0123456789ABCDEF";

/**
 * Makes a raw request target safe for `new URL`: bytes outside printable ASCII and the backslash
 * (which the URL parser would silently turn into "/") are percent-encoded, so the handler sees
 * exactly what the client sent. `raw` holds one byte per char (latin1), as HTTP parsers give it.
 */
export function escapeTarget(raw: string): string {
  let out = "";
  let start = 0;
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code > 0x20 && code < 0x7f && code !== 0x5c) continue;
    out += raw.slice(start, i);
    const byte = code & 0xff;
    out += "%" + HEX[byte >> 4] + HEX[byte & 15];
    start = i + 1;
  }
  return start === 0 ? raw : out + raw.slice(start);
}

/**
 * The request URL a handler sees: `base` + the path and query of `target`. Origin-form targets
 * are kept; absolute-form ("http://host/p?q") is reduced to its path and query. Returns null for
 * anything else (asterisk-form, authority-form, garbage).
 */
export function requestUrl(base: string, target: string): string | null {
  if (target.startsWith("/")) return base + escapeTarget(target);
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target)) {
    try {
      const url = new URL(escapeTarget(target));
      return base + url.pathname + url.search;
    } catch {
      return null;
    }
  }
  return null;
}

/**
 * Header pairs as a `new Request` init: a record when no name repeats exactly (about a third less
 * work in Deno's Request constructor than a sequence of pairs), the pairs themselves otherwise,
 * so repeated fields keep their order. Names differing in case are distinct record keys and are
 * combined by Headers as pairs would be.
 */
function headerInit(pairs: [string, string][]): HeadersInit {
  const record: Record<string, string> = Object.create(null);
  for (const [name, value] of pairs) {
    if (name in record) return pairs;
    record[name] = value;
  }
  return record;
}

/**
 * A web Request with a possibly streaming body (`duplex: "half"`, which the web standard asks for
 * and Deno's typings lack). Header pairs, as the HTTP/1.1 parser gives them, go in by headerInit.
 * No signal: transports hand theirs over in RequestInfo (see there why).
 */
export function makeRequest(
  url: string,
  method: string,
  headers: [string, string][] | Headers,
  body: ReadableStream<Uint8Array> | null,
): Request {
  const init: RequestInit & { duplex: "half" } = {
    method,
    headers: Array.isArray(headers) ? headerInit(headers) : headers,
    body,
    duplex: "half",
  };
  return new Request(url, init);
}

/** Headers from a node header object (IncomingHttpHeaders); HTTP/2 pseudo-headers skipped. */
export function headersFromNode(
  raw: Record<string, string | string[] | number | undefined>,
): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) { for (const v of value) headers.append(name, v); }
    else headers.append(name, String(value));
  }
  return headers;
}

/** Headers from node's `rawHeaders` ([name, value, name, value, …]), duplicates kept. */
export function headersFromRawPairs(raw: string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  return headers;
}

/** Connection-specific headers a transport owns; never copied from a handler's Response. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
]);

/** True for headers the transport must not copy from a Response. */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/** A Response's headers as a node header object, hop-by-hop headers dropped. */
export function nodeHeadersFromResponse(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of headers) {
    if (HOP_BY_HOP.has(name) || name === "set-cookie") continue;
    out[name] = value;
  }
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  return out;
}

/** Parses a Content-Length value the handler set; null when absent or not a valid length. */
export function parseContentLength(value: string | null): number | null {
  if (value === null || !/^\d{1,16}$/.test(value.trim())) return null;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : null;
}

/** A node Readable exposed as a web stream, plus a way to throw away what nobody read. */
export interface BridgedBody {
  readonly stream: ReadableStream<Uint8Array>;
  /** Stops delivering to the web stream and reads the rest of the source into the void. */
  drain(): void;
}

const BODY_HIGH_WATER = 256 * 1024;

function asBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) {
    return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
  return new TextEncoder().encode(String(chunk));
}

/**
 * Collects a response body that declares `declared` bytes (a small one), never holding more than
 * that plus one chunk: a longer body is cancelled and gives null, so a handler's wrong length
 * cannot make the listener buffer a large stream. A shorter body comes back as it is (the caller
 * compares); a failing one rejects.
 */
export async function collectDeclaredBody(
  body: ReadableStream<Uint8Array>,
  declared: number,
): Promise<Uint8Array | null> {
  // The lock is never released: the body ends read, cancelled or failed here, and a release
  // (which builds an error object for Deno's streams) would cost more than the whole read.
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > declared) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  return chunks.length === 1 ? chunks[0] : concatBytes(chunks, total);
}

/** `parts` joined into one new array of `total` bytes. */
export function concatBytes(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Wraps a node Readable (IncomingMessage, Http2Stream) as a web ReadableStream with backpressure:
 * the source is paused while the web queue holds BODY_HIGH_WATER bytes, resumed on pull. The web
 * stream errors if the source errors or closes before its end (client aborted), so a handler never
 * mistakes a cut-off body for a complete one. Cancelling the web stream drains the source instead
 * of destroying it, which would tear down a keep-alive connection.
 */
export function nodeReadableToWeb(source: Readable): BridgedBody {
  let controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  let settled = false;
  let draining = false;

  const settle = (error?: Error): void => {
    if (settled) return;
    settled = true;
    const c = controller;
    if (c === null) return;
    try {
      if (error) c.error(error);
      else c.close();
    } catch {
      // the stream was cancelled meanwhile
    }
  };
  const drain = (): void => {
    if (draining) return;
    draining = true;
    settle(new Error("request body no longer available"));
    if (!source.readableEnded && !source.destroyed) source.resume();
  };

  source.on("data", (chunk: unknown) => {
    if (draining || settled || controller === null) return;
    controller.enqueue(asBytes(chunk));
    if ((controller.desiredSize ?? 0) <= 0) source.pause();
  });
  source.once("end", () => settle());
  source.once("error", (error: Error) => settle(error));
  source.once("aborted", () => settle(new Error("request body aborted by the client")));
  source.once("close", () => {
    if (!source.readableEnded) settle(new Error("request body aborted by the client"));
  });
  source.pause();

  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        if (source.readableEnded) settle();
      },
      pull() {
        if (!settled && !draining) source.resume();
      },
      cancel() {
        settled = true;
        drain();
      },
    },
    { highWaterMark: BODY_HIGH_WATER, size: (chunk) => chunk.byteLength },
  );
  return { stream, drain };
}

/** Resolves when `sink` can take more data, or when it closed or failed (then returns false). */
function writable(sink: Writable): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      sink.off("drain", onDrain);
      sink.off("close", onClose);
      sink.off("error", onClose);
      resolve(ok);
    };
    const onDrain = done(true);
    const onClose = done(false);
    sink.once("drain", onDrain);
    sink.once("close", onClose);
    sink.once("error", onClose);
  });
}

/**
 * Writes a web body into a node Writable (ServerResponse, Http2Stream) with backpressure and ends
 * it. If the sink goes away first, the body is cancelled. If the body fails midway, the sink is
 * destroyed (the peer must not take a truncated body for a complete one) and the error rethrown.
 */
export async function pipeWebBodyToNode(
  body: ReadableStream<Uint8Array>,
  sink: Writable,
): Promise<void> {
  const reader = body.getReader();
  try {
    while (true) {
      if (sink.destroyed || sink.writableEnded) {
        await reader.cancel().catch(() => {});
        return;
      }
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        sink.destroy(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
      if (result.done) break;
      if (sink.destroyed) {
        await reader.cancel().catch(() => {});
        return;
      }
      if (!sink.write(result.value) && !(await writable(sink))) {
        await reader.cancel().catch(() => {});
        return;
      }
    }
    if (!sink.destroyed && !sink.writableEnded) sink.end();
  } finally {
    reader.releaseLock();
  }
}
