// HTTPS listener on node:http2's secure server: HTTP/2 and HTTP/1.1 chosen by ALPN, a minimum TLS
// version (1.2 or 1.3), and certificate reload (SIGHUP) through setSecureContext without closing
// the listening socket. Deno.serve offers neither a minimum version nor a reload, hence this
// transport. Requests and responses are bridged with node_bridge.ts, streaming with backpressure.

import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Handler } from "../http/types.ts";
import { setRequestProtocol } from "../http/access_log.ts";
import { parseListenAddress, type RunningServer } from "./listen.ts";
import {
  type BridgedBody,
  errorText,
  headersFromNode,
  headersFromRawPairs,
  nodeHeadersFromResponse,
  nodeReadableToWeb,
  pipeWebBodyToNode,
  requestUrl,
  stderrLog,
} from "./node_bridge.ts";

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
}

export interface TlsServer extends RunningServer {
  /** Reads both files again and uses them for new connections; throws (keeping the old pair). */
  reloadCertificates(): Promise<void>;
}

type NodeRequest = IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = ServerResponse | http2.Http2ServerResponse;

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

function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** The peer IP as Deno.serve reports it (IPv4-mapped IPv6 addresses unwrapped). */
function peerIp(socket: Socket | null | undefined): string {
  const address = socket?.remoteAddress ?? "";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1] : address;
}

const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

function plainResponse(res: NodeResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(body.length),
  });
  res.end(body);
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

  const server = http2.createSecureServer({
    allowHTTP1: true,
    minVersion,
    cert: pair.cert,
    key: pair.key,
    ALPNProtocols: ["h2", "http/1.1"],
  });

  let closing = false;
  let inFlight = 0;
  const sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1.1 connections and the number of requests each is serving. */
  const h1Sockets = new Map<Socket, number>();
  /** Wakes a pending shutdown whenever a request, session or connection ends. */
  let wake: (() => void) | null = null;
  const changed = () => wake?.();

  server.on("secureConnection", (socket: Socket) => {
    socket.on("error", () => {});
    if ((socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === "h2") return;
    if (closing) {
      socket.destroy();
      return;
    }
    h1Sockets.set(socket, 0);
    socket.once("close", () => {
      h1Sockets.delete(socket);
      changed();
    });
  });
  server.on("session", (session: http2.ServerHttp2Session) => {
    session.on("error", () => {});
    if (closing) {
      session.close();
      return;
    }
    sessions.add(session);
    session.once("close", () => {
      sessions.delete(session);
      changed();
    });
  });
  server.on("stream", (stream: http2.ServerHttp2Stream) => stream.on("error", () => {}));
  server.on("sessionError", () => {});
  server.on("tlsClientError", (error: Error, socket: Socket) => {
    log(`TLS handshake error from ${peerIp(socket)}: ${error.message}`);
  });

  async function serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    const h2 = req.httpVersionMajor === 2;
    const method = req.method ?? "GET";
    res.on("error", () => {});
    let bridged: BridgedBody | null = null;
    const controller = new AbortController();
    // Closed before the response was ended: the client went away (HTTP/2 also emits "finish"
    // on a reset stream, so writableEnded is the reliable sign).
    res.once("close", () => {
      if (!res.writableEnded) controller.abort(new Error("client went away"));
    });

    let request: Request;
    try {
      const authority = h2 ? (req as http2.Http2ServerRequest).authority : req.headers.host;
      const host = typeof authority === "string" && HOST.test(authority)
        ? authority
        : formatAddress(listenHost, port);
      const url = requestUrl(`https://${host}`, req.url ?? "");
      if (url === null) throw new Error("bad request target");
      const headers = h2
        ? headersFromNode(req.headers)
        : headersFromRawPairs((req as IncomingMessage).rawHeaders);
      const hasBody = method !== "GET" && method !== "HEAD";
      if (hasBody) bridged = nodeReadableToWeb(req);
      else req.resume();
      request = new Request(url, {
        method,
        headers,
        body: bridged?.stream ?? null,
        duplex: "half",
        signal: controller.signal,
      } as RequestInit);
    } catch {
      bridged?.drain();
      plainResponse(res, 400, "Bad Request");
      return;
    }
    setRequestProtocol(request, h2 ? "HTTP/2.0" : `HTTP/${req.httpVersion}`);

    let response: Response;
    try {
      response = await handler(request, { remoteAddr: peerIp(req.socket), transport: "tls" });
    } catch (error) {
      log(`ERROR: ${errorText(error)}`);
      response = new Response("Internal Server Error\n", {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8", "content-length": "22" },
      });
    }
    const status = response.status;
    const noBody = method === "HEAD" || status === 204 || status === 304 || status < 200;
    try {
      res.writeHead(status, nodeHeadersFromResponse(response.headers));
    } catch (error) {
      log(`ERROR: cannot send response headers: ${errorText(error)}`);
      await response.body?.cancel().catch(() => {});
      bridged?.drain();
      res.destroy?.();
      return;
    }
    if (noBody || response.body === null) {
      await response.body?.cancel().catch(() => {});
      res.end();
    } else {
      try {
        await pipeWebBodyToNode(response.body, res as unknown as Writable);
      } catch (error) {
        log(`ERROR: response body failed: ${errorText(error)}`);
      }
    }
    // Whatever of the request body the handler did not read is discarded, so that the
    // connection (HTTP/1.1) or the stream's flow-control window (HTTP/2) is not held up.
    bridged?.drain();
  }

  server.on("request", (req: NodeRequest, res: NodeResponse) => {
    const socket = req.httpVersionMajor === 2 ? null : req.socket as Socket;
    inFlight++;
    if (socket && h1Sockets.has(socket)) h1Sockets.set(socket, h1Sockets.get(socket)! + 1);
    serve(req, res).catch((error) => {
      log(`ERROR: ${errorText(error)}`);
      res.destroy?.();
    }).finally(() => {
      inFlight--;
      if (socket && h1Sockets.has(socket)) {
        const left = h1Sockets.get(socket)! - 1;
        h1Sockets.set(socket, left);
        if (closing && left === 0) socket.end();
      }
      changed();
    });
  });

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
  const address = formatAddress(
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
    for (const session of sessions) session.close();
    for (const [socket, active] of h1Sockets) if (active === 0) socket.end();
    while (inFlight > 0 || sessions.size > 0 || h1Sockets.size > 0) {
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
    for (const session of sessions) session.destroy();
    for (const socket of h1Sockets.keys()) socket.destroy();
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
