// BorgStore responses. Owns the one table error kind → HTTP status, the error body rules
// (plain text = message, never a server path, `Internal Server Error` for anything unexpected),
// and the headers every response carries: Cache-Control and an explicit Content-Length
// (HEAD responses keep the Content-Length but send no body).

import { type ErrorKind, toStowageError } from "../errors.ts";
import { bodyResponse, heldBodyResponse } from "../http/held_body.ts";
import { STORAGE_BASE } from "./borgstore_context.ts";

export const CACHE_CONTROL = "no-store, no-cache, must-revalidate, max-age=0";

/** Error kind → status, for every kind (spec §3). */
export const BORGSTORE_STATUS: Readonly<Record<ErrorKind, number>> = {
  NotFound: 404,
  StoreMissing: 410,
  Exists: 409,
  Conflict: 409,
  Forbidden: 403,
  Unauthorized: 401,
  BadRequest: 400,
  BadRange: 416,
  HashMismatch: 422,
  QuotaExceeded: 507,
  TooLarge: 413,
  Truncated: 400,
  NotDirectory: 500,
  IsDirectory: 500,
  NotEmpty: 500,
  Unavailable: 503,
  Internal: 500,
};

const encoder = new TextEncoder();

export interface ResponseOptions {
  contentType?: string;
  headers?: Record<string, string>;
  /** HEAD: send the headers (Content-Length included) but no body. */
  head?: boolean;
}

/** A response with a fully known body. */
export function bytesResponse(
  status: number,
  body: Uint8Array<ArrayBuffer> | string,
  options: ResponseOptions = {},
): Response {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const headers = new Headers(options.headers);
  headers.set("cache-control", CACHE_CONTROL);
  headers.set("content-length", String(bytes.byteLength));
  if (options.contentType !== undefined) headers.set("content-type", options.contentType);
  if (options.head || bytes.byteLength === 0) return new Response(null, { status, headers });
  return heldBodyResponse(bytes, { status, headers });
}

/** A streamed (or read in one piece) response whose length is known in advance. */
export function streamResponse(
  status: number,
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer>,
  length: number,
  headers: Record<string, string>,
): Response {
  const all = new Headers(headers);
  all.set("cache-control", CACHE_CONTROL);
  all.set("content-length", String(length));
  return bodyResponse(body, { status, headers: all });
}

/** An empty 200. */
export function okResponse(): Response {
  return bytesResponse(200, "");
}

/** A plain-text error response. */
export function textError(status: number, message: string, head: boolean): Response {
  return bytesResponse(status, message, { contentType: "text/plain; charset=utf-8", head });
}

/** Maps anything thrown by an operation to its response; `hide` lists paths to mask. */
export function errorResponse(
  error: unknown,
  options: { head: boolean; hide: string[]; log: (message: string) => void },
): Response {
  const e = toStowageError(error);
  const status = BORGSTORE_STATUS[e.kind];
  let message = e.message;
  if (e.kind === "Internal") {
    message = "Internal Server Error";
    options.log(`borgstore internal error: ${e.detail ?? e.message}`);
  }
  for (const path of options.hide) {
    if (path.length > 1) message = message.replaceAll(path, STORAGE_BASE);
  }
  return textError(status, message, options.head);
}
