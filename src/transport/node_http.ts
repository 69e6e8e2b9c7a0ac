// Plain HTTP/1.1 listener on node:http, used for inherited sockets (systemd socket activation:
// Deno.listen cannot adopt an fd), with the connection timeouts Deno.serve lacks. Plain TCP from
// --listen runs on tcp_h1.ts instead, which costs less per request. node's own per-request
// deadline is off (no total-transfer limit); its header timeout answers 408; the idle rules are
// ConnectionGuard's.
// Graceful shutdown: stop accepting, end idle connections, let running requests finish (each
// connection closes after its last response), destroy what is left when the grace period ends.

import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Handler, RequestInfo } from "../http/types.ts";
import { errorText, stderrLog } from "./node_bridge.ts";
import { answerNodeRequest, formatHostPort } from "./node_request.ts";
import { ConnectionGuard, type ConnectionTimeouts } from "./timeouts.ts";

export interface NodeHttpOptions {
  transport: RequestInfo["transport"];
  timeouts: ConnectionTimeouts;
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
}

export type ListenTarget = { port: number; hostname: string } | { fd: number };

export interface NodeHttpListener {
  /** Starts listening; resolves with the printable address (`host:port`, or null for unix). */
  listen(target: ListenTarget): Promise<AddressInfo | string | null>;
  /** Resolves once the listener has stopped and every connection is gone. */
  readonly finished: Promise<void>;
  /** Stops accepting, waits for running requests up to `graceMs`, then closes everything. */
  shutdown(graceMs: number): Promise<void>;
}

/**
 * node's "clientError" handler for HTTP/1.1 servers: 408 for a head that took too long, 431 for
 * one too large, 400 otherwise. A body that breaks its framing midway is answered only once its
 * handler has cleaned up (and only if the handler did not answer itself).
 */
export function clientErrorAnswer(guard: ConnectionGuard): (error: Error, socket: Socket) => void {
  return (error, socket) => {
    const code = (error as Error & { code?: string }).code;
    const status = code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? "408 Request Timeout"
      : code === "HPE_HEADER_OVERFLOW"
      ? "431 Request Header Fields Too Large"
      : "400 Bad Request";
    const writtenBefore = socket.bytesWritten;
    guard.afterBrokenRequest(socket, () => {
      if (!socket.writable) socket.destroy();
      else if (socket.bytesWritten > writtenBefore) socket.end();
      else socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
  };
}

export function createNodeHttpListener(
  handler: Handler,
  options: NodeHttpOptions,
): NodeHttpListener {
  const log = options.log ?? stderrLog;
  const { headerMs } = options.timeouts;
  const guard = new ConnectionGuard(options.timeouts);
  let hostForUrls = "localhost";

  const server = http.createServer({
    requestTimeout: 0,
    headersTimeout: headerMs,
    keepAliveTimeout: 0,
    connectionsCheckingInterval: headerMs > 0 ? Math.min(1000, Math.max(50, headerMs / 4)) : 30_000,
  });
  server.on("connection", (socket: Socket) => {
    socket.on("error", () => {});
    guard.watch(socket);
  });
  // node destroys a quiet socket itself unless someone listens here; ConnectionGuard decides
  server.on("timeout", () => {});
  server.on("clientError", clientErrorAnswer(guard));
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    guard.requestStarted(socket, { request: req, response: res });
    answerNodeRequest(handler, req, res, {
      scheme: "http",
      transport: options.transport,
      fallbackHost: () => hostForUrls,
      log,
    }).finally(() => guard.requestFinished(socket));
  });

  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => (resolveFinished = resolve));
  let shutdownPromise: Promise<void> | null = null;

  async function shutdown(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    server.close();
    guard.close();
    while (guard.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        guard.onChange(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      guard.onChange(null);
    }
    guard.destroyAll();
    resolveFinished();
  }

  return {
    listen(target) {
      return new Promise((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        server.once("error", onError);
        const ready = () => {
          server.off("error", onError);
          server.on("error", (error: Error) => log(`server error: ${errorText(error)}`));
          const bound = server.address();
          if (bound !== null && typeof bound === "object") {
            hostForUrls = formatHostPort(bound.address, bound.port);
          }
          resolve(bound);
        };
        if ("fd" in target) server.listen({ fd: target.fd }, ready);
        else server.listen(target.port, target.hostname, ready);
      });
    },
    finished,
    shutdown(graceMs) {
      shutdownPromise ??= shutdown(graceMs);
      return shutdownPromise;
    },
  };
}
