// restic REST responses: the one table from error kinds to status codes, and error bodies
// exactly as rest-server writes them (`<Reason>\n`, text/plain, nosniff, Content-Length; no
// body on HEAD).

import type { ErrorKind } from "../errors.ts";

export const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  301: "Moved Permanently",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  411: "Length Required",
  412: "Precondition Failed",
  416: "Requested Range Not Satisfiable",
  500: "Internal Server Error",
  503: "Service Unavailable",
  507: "Insufficient Storage",
};

/** restic status code of every error kind. */
export const RESTIC_STATUS: Record<ErrorKind, number> = {
  NotFound: 404,
  StoreMissing: 404,
  Exists: 403,
  Conflict: 403,
  Forbidden: 403,
  Unauthorized: 401,
  BadRequest: 400,
  BadRange: 416,
  HashMismatch: 400,
  QuotaExceeded: 507,
  TooLarge: 507,
  NotDirectory: 500,
  IsDirectory: 500,
  NotEmpty: 500,
  Truncated: 400,
  Unavailable: 503,
  Internal: 500,
};

const encoder = new TextEncoder();

/** An error response; `text` defaults to the reason phrase. */
export function resticError(
  status: number,
  method: string,
  options: { text?: string; headers?: Record<string, string> } = {},
): Response {
  const body = encoder.encode(`${options.text ?? REASONS[status] ?? "Error"}\n`);
  const headers = new Headers(options.headers);
  headers.set("content-type", "text/plain; charset=utf-8");
  headers.set("x-content-type-options", "nosniff");
  headers.set("content-length", String(body.byteLength));
  return new Response(method === "HEAD" ? null : body, { status, headers });
}

/** An empty 200 with `Content-Length: 0`. */
export function resticOk(): Response {
  return new Response(null, { status: 200, headers: { "content-length": "0" } });
}

/** WHATWG-style sniffing reduced to what matters here: binary or text. */
export function sniffContentType(head: Uint8Array): string | null {
  if (head.byteLength === 0) return null;
  const n = Math.min(head.byteLength, 512);
  for (let i = 0; i < n; i++) {
    const b = head[i];
    if (b <= 0x08 || b === 0x0b || (b >= 0x0e && b <= 0x1a) || (b >= 0x1c && b <= 0x1f)) {
      return "application/octet-stream";
    }
  }
  return "text/plain; charset=utf-8";
}
