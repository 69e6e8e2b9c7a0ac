// Answer bodies already in memory, held beside their Response instead of inside it. In Deno,
// `new Response(bytes, init)` with headers costs several microseconds more than a Response
// without a body (it prepares the bytes for Deno.serve), and reading them back out of
// `response.body` costs a stream and a reader; for 4 KiB GETs on stowage's own HTTP/1.1 writer,
// leaving both out saved 7–16 % of the server's CPU. A transport that writes held bodies itself
// says so in its RequestInfo (`heldBodies`); for every other consumer the dispatcher puts the
// bytes into the Response (`withHeldBody`), so handlers stay ordinary fetch handlers from outside.
//
// The same holds for small request bodies the other way: piping a 4 KiB upload through web
// streams (body, digest, writer) costs about 25 µs, more than hashing and writing it. Those
// transports offer each request's body whole as well (`offerWholeBody`); a handler that wants
// it in one buffer asks `readWholeBody` and falls back to `request.body` when it gets null.

import { BYTES_BODY_LIMIT, oneChunkStream } from "../storage/provider.ts";

const held = new WeakMap<Response, Uint8Array>();

/** A Response whose body is `bytes`, held beside it (see the module comment). */
export function heldBodyResponse(bytes: Uint8Array, init: ResponseInit): Response {
  const response = new Response(null, init);
  held.set(response, bytes);
  return response;
}

/** The held body of `response`, handed over once; undefined when it has none. */
export function takeHeldBody(response: Response): Uint8Array | undefined {
  const bytes = held.get(response);
  if (bytes !== undefined) held.delete(response);
  return bytes;
}

/**
 * `response` with its held body inside it, for consumers that read `response.body`: a copy up to
 * BYTES_BODY_LIMIT (Deno.serve sends those without a stream), beyond it a stream of the bytes
 * themselves (a copy of a few hundred KiB costs more than the stream).
 */
export function withHeldBody(response: Response): Response {
  const bytes = takeHeldBody(response);
  if (bytes === undefined) return response;
  const body = bytes.length > BYTES_BODY_LIMIT
    ? oneChunkStream(bytes)
    : bytes as Uint8Array<ArrayBuffer>;
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** A Response for a body read in one piece (held) or as a stream (inside it). */
export function bodyResponse(
  body: Uint8Array | ReadableStream<Uint8Array>,
  init: ResponseInit,
): Response {
  return body instanceof Uint8Array ? heldBodyResponse(body, init) : new Response(body, init);
}

/** `response` as the transport of `info` takes it: held bodies only where it writes them. */
export function forTransport(response: Response, info: { heldBodies?: boolean }): Response {
  return info.heldBodies === true ? response : withHeldBody(response);
}

/** Upload bodies up to this size are taken in one buffer where the transport offers it. */
export const WHOLE_BODY_LIMIT = 64 * 1024;

/** Reads a request's body whole when it is at most `limit` bytes and unread; null otherwise. */
export type WholeBodyReader = (limit: number) => Promise<Uint8Array> | null;

const wholeBodies = new WeakMap<Request, WholeBodyReader>();

/** Lets handlers take `request`'s body in one buffer (see the module comment). */
export function offerWholeBody(request: Request, read: WholeBodyReader): void {
  wholeBodies.set(request, read);
}

/**
 * `request`'s body in one buffer when its transport offers it, it is at most `limit` bytes and
 * nobody has read it; `request.body` must not be read after. Null otherwise: read `request.body`.
 */
export function readWholeBody(request: Request, limit: number): Promise<Uint8Array> | null {
  const read = wholeBodies.get(request);
  if (read === undefined) return null;
  const whole = read(limit);
  if (whole !== null) wholeBodies.delete(request);
  return whole;
}
