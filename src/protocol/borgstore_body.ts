// Request bodies for the BorgStore protocol. Owns: Content-Length parsing, an exact-length body
// reader that maps transport failures to "Truncated", bounded reads of small JSON bodies, and the
// rule that every request body is consumed completely before the response is sent (so keep-alive
// and stdio streams never desynchronise), even when a handler stops reading half-way.

import { StowageError } from "../errors.ts";
import { readWholeBody } from "../http/held_body.ts";
import { drainBody } from "../stream/digest.ts";

/** The declared body length, null when absent (chunked or no body). Invalid → BadRequest. */
export function parseContentLength(request: Request): number | null {
  const value = request.headers.get("content-length");
  if (value === null) return null;
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(Number(trimmed))) {
    throw new StowageError("BadRequest", `Invalid Content-Length: ${value}`);
  }
  return Number(trimmed);
}

/** A request body read chunk by chunk; its remainder can always be discarded with drain(). */
export class RequestBody {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | null;
  readonly #expected: number | null;
  #seen = 0;
  #done = false;
  /** Serialises reads, so drain() never overlaps a pending read. */
  #queue: Promise<unknown> = Promise.resolve();

  readonly #request: Request;

  constructor(request: Request, expected: number | null) {
    this.#request = request;
    this.#reader = request.body === null ? null : request.body.getReader();
    this.#expected = expected;
  }

  /**
   * The whole body in one buffer, when its transport offers it (`readWholeBody`), it has a
   * Content-Length of at most `limit` and nothing was read yet; null otherwise (read the stream).
   * Rejects with Truncated when the input ends early.
   */
  whole(limit: number): Promise<Uint8Array> | null {
    if (this.#expected === null || this.#seen > 0 || this.#done) return null;
    const whole = readWholeBody(this.#request, limit);
    if (whole === null) return null;
    this.#done = true;
    const read = whole.then(
      (bytes) => {
        this.#seen = bytes.byteLength;
        return bytes;
      },
      (error) => {
        throw new StowageError("Truncated", "request body ended before its declared length", {
          detail: String(error),
        });
      },
    );
    this.#queue = read.catch(() => {});
    return read;
  }

  /** Bytes received so far. */
  bytes(): number {
    return this.#seen;
  }

  /** The next chunk, or null at the end. Throws Truncated / BadRequest on framing errors. */
  read(): Promise<Uint8Array | null> {
    const next = this.#queue.then(() => this.#readOne());
    this.#queue = next.catch(() => {});
    return next;
  }

  async #readOne(): Promise<Uint8Array | null> {
    if (this.#done) return null;
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = this.#reader === null ? { done: true, value: undefined } : await this.#reader.read();
    } catch (error) {
      this.#done = true;
      throw new StowageError("Truncated", "request body ended before its declared length", {
        detail: String(error),
      });
    }
    if (result.done) {
      this.#done = true;
      if (this.#expected !== null && this.#seen < this.#expected) {
        throw new StowageError("Truncated", "request body ended before its declared length");
      }
      return null;
    }
    this.#seen += result.value.byteLength;
    if (this.#expected !== null && this.#seen > this.#expected) {
      throw new StowageError("BadRequest", "request body longer than Content-Length");
    }
    return result.value;
  }

  /** Reads and discards everything that is left; errors are ignored. Idempotent. */
  drain(): Promise<void> {
    const next = this.#queue.then(async () => {
      while (!this.#done) {
        try {
          await this.#readOne();
        } catch {
          // the body is over or broken either way; keep discarding until the end
        }
      }
    });
    this.#queue = next;
    return next;
  }

  /** The body as a stream; cancelling it drains the rest of the request body. */
  readable(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await this.read();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      },
      cancel: () => this.drain(),
    }, { highWaterMark: 0 });
  }
}

const openBodies = new WeakMap<Request, RequestBody>();

/** Starts reading a request's body; settleBody() later consumes whatever is left. */
export function openBody(request: Request, expected: number | null): RequestBody {
  const body = new RequestBody(request, expected);
  openBodies.set(request, body);
  return body;
}

/** Consumes what is left of a request body (opened by openBody or untouched). */
export async function settleBody(request: Request): Promise<void> {
  const body = openBodies.get(request);
  if (body !== undefined) await body.drain();
  else await drainBody(request);
}

/** Reads a whole body of at most `limit` bytes; a larger body is drained and rejected. */
export async function readSmallBody(request: Request, limit: number): Promise<Uint8Array> {
  const body = openBody(request, parseContentLength(request));
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (let chunk = await body.read(); chunk !== null; chunk = await body.read()) {
      total += chunk.byteLength;
      if (total > limit) {
        throw new StowageError("BadRequest", `request body too large (max: ${limit} bytes)`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    await body.drain();
    throw error;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
