// HTTP/1.1 request side, shared by the stdio transport and the plain-TCP listener: buffered
// input (lines for heads, zero-copy pieces for bodies), request-head parsing with its limits
// (request line ≤ 64 KiB → 414; ≤ 100 header lines of ≤ 64 KiB each → 431; unframeable input is
// fatal), and the request body as a stream read on demand by its framing (Content-Length or
// chunked), with a discard that keeps the input in sync for the next request.

import { type ByteReader, concatBytes } from "./node_bridge.ts";

export const MAX_REQUEST_LINE = 64 * 1024;
export const MAX_HEADER_LINE = 64 * 1024;
export const MAX_HEADERS = 100;
const MAX_CHUNK_SIZE_LINE = 4096;
const MAX_BODY_PIECE = 1024 * 1024;
const READ_SLAB = 64 * 1024;
const MIN_READ_ROOM = 16 * 1024;
const EMPTY = new Uint8Array(0);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    // apply, not spread: spreading a typed array walks its iterator (about 5× slower per head)
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

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
    // told apart by shape: the first touch of the ReadableStream global loads Deno's streams
    // implementation (about 3 ms), which a TCP server's first answer need not wait for
    if (!("read" in input)) {
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

  /** True when bytes already read wait here (a pipelined request, for example). */
  get buffered(): boolean {
    return this.#pending.length > 0;
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
   * The next line when it is already here whole (its LF buffered), without waiting: null
   * otherwise, and then `readLine` reads it. Same results as `readLine`.
   */
  lineNow(limit: number): LineResult | null {
    const pending = this.#pending;
    const lf = pending.indexOf(10);
    if (lf < 0) return null;
    this.#pending = pending.subarray(lf + 1);
    const end = lf > 0 && pending[lf - 1] === 13 ? lf - 1 : lf;
    if (end > limit) return { kind: "too-long", prefix: latin1(pending.subarray(0, 64)) };
    return { kind: "line", text: latin1(pending.subarray(0, end)) };
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

export type Framing = { kind: "length"; length: number } | { kind: "chunked" };

/** An error answer: status and a short text. */
export interface Refusal {
  status: number;
  message: string;
}

export type RequestHead =
  | { kind: "eof"; partial: boolean }
  /** Unrecoverable: answer `refusal`, then stop (the input can no longer be framed). */
  | { kind: "fatal"; refusal: Refusal }
  | {
    kind: "request";
    /** "HTTP/1.1" or "HTTP/1.0" (1.1 when the request line was too long to read). */
    version: string;
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
    requestLine = input.lineNow(MAX_REQUEST_LINE) ?? await input.readLine(MAX_REQUEST_LINE);
    if (requestLine.kind !== "line" || requestLine.text !== "" || blanks >= 16) break;
  }
  if (requestLine.kind === "eof") return requestLine;

  let refusal: Refusal | null = null;
  let method = "";
  let target = "";
  let version = "HTTP/1.1";
  if (requestLine.kind === "too-long") {
    refusal = { status: 414, message: "request line too long" };
  } else {
    const parts = requestLine.text.split(" ");
    version = parts[parts.length - 1];
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
    const line = input.lineNow(MAX_HEADER_LINE) ?? await input.readLine(MAX_HEADER_LINE);
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
    const value = trimOws(line.text, colon + 1);
    const lower = name.toLowerCase();
    if (lower === "content-length") lengths.push(value);
    else if (lower === "transfer-encoding") codings.push(value);
    if (count <= MAX_HEADERS) headers.push([name, value]);
  }

  const framing = decideFraming(lengths, codings);
  if ("status" in framing) return { kind: "fatal", refusal: framing };
  return { kind: "request", version, method, target, headers, framing, refusal };
}

/** `text` from `start` without leading and trailing spaces and tabs (a header value's OWS). */
function trimOws(text: string, start: number): string {
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
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
  /** The web stream has been pulled: the body is no longer whole here. */
  #pulled = false;
  /** `readWhole` took the body: the web stream has nothing to give. */
  #taken = false;

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

  /**
   * The whole body in one buffer, for a Content-Length body of at most `limit` bytes that nobody
   * has read yet (null otherwise): the piece itself when it came in one read, else one copy. After
   * it, the web stream errors. Rejects like a read of the stream would (the input ended early).
   */
  readWhole(limit: number): Promise<Uint8Array> | null {
    if (this.#framing.kind !== "length" || this.#state !== "open") return null;
    if (this.#pulled || this.#taken || this.#detached) return null;
    const total = this.#framing.length;
    if (this.#remaining !== total || total > limit) return null;
    this.#taken = true;
    const whole = this.#readAll(total);
    this.#busy = whole.catch(() => {});
    return whole;
  }

  async #readAll(total: number): Promise<Uint8Array> {
    const first = await this.#read();
    if (first === null || first.length === total) return first ?? EMPTY;
    const whole = new Uint8Array(total);
    whole.set(first);
    let at = first.length;
    while (at < total) {
      const piece = await this.#read();
      if (piece === null) break; // cannot happen: #read throws when the input ends early
      whole.set(piece, at);
      at += piece.length;
    }
    return whole;
  }

  /** The body as a web stream; a piece is read from the input only when the consumer pulls. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        this.#pulled = true;
        if (this.#taken) {
          controller.error(new Error("request body already taken"));
          return;
        }
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
