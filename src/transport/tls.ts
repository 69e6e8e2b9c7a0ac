// HTTPS listener on node:http2's secure server: HTTP/2 and HTTP/1.1 chosen by ALPN, a minimum TLS
// version (1.2 or 1.3), and certificate reload (SIGHUP) through setSecureContext without closing
// the listening socket. Deno.serve offers neither a minimum version nor a reload, hence this
// transport. Requests are answered by node_request.ts (streaming both ways, with backpressure).
// Timeouts: the handshake and HTTP/1.1 request heads get the header-read timeout; quiet HTTP/1.1
// connections follow ConnectionGuard's idle rules; an HTTP/2 session without requests is closed
// after the idle time, and an HTTP/2 stream whose client stalls is cancelled.

import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Handler } from "../http/types.ts";
import { parseListenAddress, type RunningServer } from "./listen.ts";
import { stderrLog } from "./node_bridge.ts";
import { clientErrorAnswer } from "./node_http.ts";
import {
  answerNodeRequest,
  formatHostPort,
  type NodeRequest,
  type NodeResponse,
  peerIp,
} from "./node_request.ts";
import {
  ConnectionGuard,
  type ConnectionTimeouts,
  DEFAULT_TIMEOUTS,
  stalledBy,
} from "./timeouts.ts";

export interface TlsListenOptions {
  /** `host:port`, `:port` or `[v6]:port`. */
  address: string;
  /** PEM certificate chain. */
  certFile: string;
  /** PEM private key. */
  keyFile: string;
  minVersion: "1.2" | "1.3";
  /** Where handshake and bridging errors go (default: stderr). */
  log?: (line: string) => void;
  /** Header-read and idle timeouts (default: DEFAULT_TIMEOUTS). */
  timeouts?: ConnectionTimeouts;
}

export interface TlsServer extends RunningServer {
  /** Reads both files again and uses them for new connections; throws (keeping the old pair). */
  reloadCertificates(): Promise<void>;
}

interface KeyPair {
  cert: string;
  key: string;
}

/** Reads and checks a certificate and its key; the error names the file at fault. */
export async function loadKeyPair(certFile: string, keyFile: string): Promise<KeyPair> {
  const read = async (file: string, what: string) => {
    try {
      return await Deno.readTextFile(file);
    } catch (error) {
      throw new Error(`cannot read TLS ${what} ${file}: ${(error as Error).message}`);
    }
  };
  const cert = await read(certFile, "certificate");
  const key = await read(keyFile, "private key");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`invalid TLS certificate ${certFile}: ${(error as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new Error(`invalid TLS private key ${keyFile}: ${(error as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(`TLS private key ${keyFile} does not match certificate ${certFile}`);
  }
  return { cert, key };
}

/** Starts the HTTPS listener; rejects when the files are bad or the address cannot be bound. */
export async function startTlsListener(
  handler: Handler,
  options: TlsListenOptions,
): Promise<TlsServer> {
  const parsed = parseListenAddress(options.address);
  if (parsed.kind !== "tcp") {
    throw new Error(`TLS needs a TCP listen address, not ${options.address}`);
  }
  const listenHost = parsed.hostname;
  const log = options.log ?? stderrLog;
  const minVersion = options.minVersion === "1.3" ? "TLSv1.3" : "TLSv1.2";
  const pair = await loadKeyPair(options.certFile, options.keyFile);

  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  const server = http2.createSecureServer({
    allowHTTP1: true,
    minVersion,
    cert: pair.cert,
    key: pair.key,
    ALPNProtocols: ["h2", "http/1.1"],
    // the TLS handshake counts as part of reading the request head
    handshakeTimeout: timeouts.headerMs > 0 ? timeouts.headerMs : 120_000,
  });

  let closing = false;
  let inFlight = 0;
  /** HTTP/2 sessions and the number of requests each is serving. */
  const sessions = new Map<http2.Http2Session, number>();
  /** HTTP/1.1 connections: request counts, header-read and idle timeouts. */
  const guard = new ConnectionGuard(timeouts);
  /** Wakes a pending shutdown whenever a request, session or connection ends. */
  let wake: (() => void) | null = null;
  const changed = () => wake?.();
  guard.onChange(changed);

  server.on("secureConnection", (socket: Socket) => {
    socket.on("error", () => {});
    if ((socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === "h2") return;
    guard.watch(socket);
  });
  server.on("session", (session: http2.ServerHttp2Session) => {
    session.on("error", () => {});
    if (closing) {
      session.close();
      return;
    }
    sessions.set(session, 0);
    session.once("close", () => {
      sessions.delete(session);
      changed();
    });
    if (timeouts.idleMs > 0) {
      // a session with no stream open and no frames for the idle time is closed (GOAWAY);
      // streams are watched one by one (below)
      session.setTimeout(timeouts.idleMs, () => {
        if ((sessions.get(session) ?? 0) === 0) session.close();
      });
    }
  });
  server.on("stream", (stream: http2.ServerHttp2Stream) => stream.on("error", () => {}));
  server.on("sessionError", () => {});
  // node destroys a quiet HTTP/1.1 socket itself unless someone listens here, and its own
  // keep-alive timer would replace the guard's idle timer: the guard decides alone
  server.on("timeout", () => {});
  (server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 0;
  server.on("clientError", clientErrorAnswer(guard));
  server.on("tlsClientError", (error: Error, socket: Socket) => {
    log(`TLS handshake error from ${peerIp(socket)}: ${error.message}`);
  });

  server.on("request", (req: NodeRequest, res: NodeResponse) => {
    const h2 = req.httpVersionMajor === 2;
    const socket = h2 ? null : (req as IncomingMessage).socket;
    const session = h2 ? (req as http2.Http2ServerRequest).stream.session : undefined;
    inFlight++;
    if (session !== undefined && sessions.has(session)) {
      sessions.set(session, sessions.get(session)! + 1);
    }
    if (socket !== null) {
      guard.requestStarted(socket, {
        request: req as IncomingMessage,
        response: res as ServerResponse,
      });
    } else if (timeouts.idleMs > 0) {
      watchStream(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse);
    }
    answerNodeRequest(handler, req, res, {
      scheme: "https",
      transport: "tls",
      fallbackHost: () => formatHostPort(listenHost, port),
      log,
    }).finally(() => {
      inFlight--;
      if (socket !== null) guard.requestFinished(socket);
      if (session !== undefined && sessions.has(session)) {
        sessions.set(session, Math.max(0, sessions.get(session)! - 1));
      }
      changed();
    });
  });

  /** Idle rule for one HTTP/2 stream: a client stalling its upload or download loses it. */
  function watchStream(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    const stream = req.stream;
    const onQuiet = () => {
      if (stream.destroyed || stream.closed) return;
      const view = { request: req, response: res as unknown as Writable };
      if (stalledBy(view, 0) === "client") stream.close(http2.constants.NGHTTP2_CANCEL);
      else stream.setTimeout(timeouts.idleMs, onQuiet);
    };
    stream.setTimeout(timeouts.idleMs, onQuiet);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      reject(new Error(`listen on ${options.address} failed: ${error.message}`));
    };
    server.once("error", onError);
    server.listen(parsed.port, parsed.hostname, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === "object" && bound !== null ? bound.port : parsed.port;
  const address = formatHostPort(
    typeof bound === "object" && bound !== null ? bound.address : parsed.hostname,
    port,
  );

  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => resolveFinished = resolve);
  let shutdownPromise: Promise<void> | null = null;

  /**
   * Stops accepting, lets HTTP/2 sessions finish their streams (GOAWAY) and HTTP/1.1 connections
   * their current request, then waits until every connection has closed by itself (so that the
   * last responses are flushed) or the grace period ends, and destroys what is left.
   */
  async function shutdown(graceMs: number): Promise<void> {
    closing = true;
    const deadline = Date.now() + graceMs;
    server.close();
    for (const session of sessions.keys()) session.close();
    guard.close();
    while (inFlight > 0 || sessions.size > 0 || guard.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      wake = null;
    }
    for (const session of sessions.keys()) session.destroy();
    guard.destroyAll();
    resolveFinished();
  }

  return {
    address,
    finished,
    shutdown(graceMs = 30_000) {
      shutdownPromise ??= shutdown(graceMs);
      return shutdownPromise;
    },
    async reloadCertificates() {
      const next = await loadKeyPair(options.certFile, options.keyFile);
      server.setSecureContext({ cert: next.cert, key: next.key, minVersion });
    },
  };
}
