// The top of the one handler: /health, /metrics, the choice of protocol by the Accept header,
// the access log, and the last line of defence that turns any escaped error into a plain 500.

import type { Logger } from "../log.ts";
import { forTransport } from "./held_body.ts";
import type { Handler, RequestInfo } from "./types.ts";

export const BORGSTORE_ACCEPT = "application/vnd.x.borgstore.rest.v1";

export interface AccessRecord {
  request: Request;
  info: RequestInfo;
  status: number;
  /** Response body bytes as declared (Content-Length), or null when streamed. */
  bytes: number | null;
  started: number;
}

export interface DispatchOptions {
  restic: (request: Request) => Promise<Response>;
  /** Serves borgstore requests (Accept header), when borg stores are enabled. */
  borgstore?: (request: Request, info: RequestInfo) => Promise<Response>;
  /** Serves the exact path /metrics, when enabled. */
  metrics?: (request: Request) => Promise<Response>;
  accessLog?: (record: AccessRecord) => void;
  log: Logger;
}

function healthResponse(method: string): Response {
  return new Response(method === "HEAD" ? null : "ok\n", {
    status: 200,
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": "3" },
  });
}

export function createDispatcher(options: DispatchOptions): Handler {
  const { log } = options;

  async function route(request: Request, info: RequestInfo): Promise<Response> {
    const accept = request.headers.get("accept");
    if (accept === BORGSTORE_ACCEPT && options.borgstore) {
      return await options.borgstore(request, info);
    }
    const path = pathOf(request.url);
    if (path === "/health" && (request.method === "GET" || request.method === "HEAD")) {
      return healthResponse(request.method);
    }
    if (path === "/metrics" && options.metrics) return await options.metrics(request);
    return await options.restic(request);
  }

  return async (request, info) => {
    const started = performance.now();
    let response: Response;
    try {
      response = await route(request, info);
    } catch (error) {
      log.error(`ERROR: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
      const body = "Internal Server Error\n";
      response = new Response(request.method === "HEAD" ? null : body, {
        status: 500,
        headers: {
          "content-type": "text/plain; charset=utf-8",
          "content-length": String(body.length),
        },
      });
    }
    response = forTransport(response, info);
    if (log.debugEnabled) log.debug(`${request.method} ${pathOf(request.url)} ${response.status}`);
    if (options.accessLog) {
      const length = response.headers.get("content-length");
      options.accessLog({
        request,
        info,
        status: response.status,
        bytes: length === null ? null : Number(length),
        started,
      });
    }
    return response;
  };
}

/** The raw path of a request URL without parsing the whole URL twice. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = url.length;
  const q = url.indexOf("?", start);
  if (q >= 0) end = q;
  const h = url.indexOf("#", start);
  if (h >= 0 && h < end) end = h;
  return url.slice(start, end);
}
