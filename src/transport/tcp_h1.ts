// Plain-TCP HTTP/1.1 listener on Deno.listen, with the HTTP/1.1 engine of h1_read / h1_write: the
// default for `--listen host:port` while connection timeouts are on. About a quarter less CPU per
// small request than node:http, and no per-request timers.
// Owns, per connection: keep-alive (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
// `Connection: keep-alive`), the request URL from a checked Host header (the listen address
// otherwise), the peer address, a Date header, chunked answers for bodies without a length
// (HTTP/1.0: sent until close), and an abort signal (RequestInfo.signal) when the connection goes
// while a handler runs.
// Timeouts follow ConnectionGuard's rules (timeouts.ts), checked by one sweep ticker per listener
// (ticker.ts: no node timers are loaded before the first answer):
// - a request head must be complete `headerMs` after the connection opened, or `headerMs +
//   idleMs` after the previous response: 408, then close;
// - a connection on which no bytes moved for `idleMs` is closed when a read or a write to the
//   client is pending (idle between requests, a stalled upload, a response the client does not
//   read), and kept when none is (the handler is working, or holds the body back).
// Graceful shutdown: stop accepting, end idle connections, let running requests finish (their
// connection closes after the answer), close whatever is left when the grace period ends.

import type { Handler, RequestInfo } from "../http/types.ts";
import { setRequestProtocol } from "../http/request_protocol.ts";
import { offerWholeBody } from "../http/held_body.ts";
import { InputBuffer, readRequestHead, RequestBody, type RequestHead } from "./h1_read.ts";
import {
  OutputBuffer,
  type ResponseFraming,
  writeContinue,
  writeRefusal,
  writeResponse,
} from "./h1_write.ts";
import { byteSink, errorText, makeRequest, requestUrl, stderrLog } from "./node_bridge.ts";
import { formatHostPort, HOST, unmapIpv4 } from "./node_request.ts";
import type { ConnectionTimeouts } from "./timeouts.ts";
import { startTicker } from "../ticker.ts";

export interface TcpHttp1Options {
  hostname: string;
  port: number;
  timeouts: ConnectionTimeouts;
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
}

export interface TcpHttp1Server {
  /** Printable bound address: `127.0.0.1:8000`, `[::]:8000`. */
  address: string;
  /** Resolves once the listener has stopped and every connection is gone. */
  finished: Promise<void>;
  /** Stops accepting, lets running requests finish up to `graceMs`, then closes everything. */
  shutdown(graceMs: number): Promise<void>;
}

/** Bytes already on their way when a shutdown starts get this long to be read. */
const SHUTDOWN_READ_GRACE_MS = 100;
const ACCEPT_RETRY_MS = 100;

let dateSecond = -1;
let dateText = "";

/** The Date header value, computed once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** The comma-separated tokens of the request's Connection fields, lowercased. */
function connectionTokens(headers: [string, string][]): string[] {
  const tokens: string[] = [];
  for (const [name, value] of headers) {
    if (name.length !== 10 || name.toLowerCase() !== "connection") continue;
    for (const token of value.split(",")) tokens.push(token.trim().toLowerCase());
  }
  return tokens;
}

function hostField(headers: [string, string][]): string | null {
  for (const [name, value] of headers) {
    if (name.length === 4 && name.toLowerCase() === "host") return value;
  }
  return null;
}

/** One accepted connection: its I/O counters for the timeouts, and its request loop. */
class Connection {
  readonly conn: Deno.Conn;
  /** Reads and writes to the client that have started but not finished. */
  reading = 0;
  writing = 0;
  /** Bumped whenever a read or write starts or ends. */
  activity = 0;
  /** The sweep's view: `activity` when it last changed, and since when it has not. */
  seenActivity = -1;
  quietSince = Date.now();
  bytesRead = 0;
  /** bytesRead when the connection last became idle between requests. */
  bytesWhenIdle = 0;
  /** Waiting for (or reading) a request head, as opposed to serving a request. */
  betweenRequests = true;
  /** When the pending head must be complete (ms since epoch); 0 = no deadline. */
  headerDeadline = 0;
  /** The current request's abort controller while its handler runs. */
  controller: AbortController | null = null;
  closed = false;
  readonly input: InputBuffer;
  readonly output: OutputBuffer;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.input = new InputBuffer({
      read: async (bytes) => {
        this.reading++;
        this.activity++;
        try {
          const n = await conn.read(bytes);
          if (n !== null) this.bytesRead += n;
          return n;
        } finally {
          this.reading--;
          this.activity++;
        }
      },
    });
    this.output = new OutputBuffer(byteSink({
      write: async (bytes) => {
        this.writing++;
        this.activity++;
        try {
          return await conn.write(bytes);
        } finally {
          this.writing--;
          this.activity++;
        }
      },
    }));
  }

  /** Idle: between requests, with nothing of a next request received. */
  get idle(): boolean {
    return this.betweenRequests && !this.input.buffered && this.bytesRead === this.bytesWhenIdle;
  }

  /** Closes the connection at once; pending reads and writes fail, a running handler is aborted. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort(new Error("client went away"));
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** Listens on `hostname:port` and serves HTTP/1.1 on every connection until shut down. */
export function startTcpHttp1(handler: Handler, options: TcpHttp1Options): TcpHttp1Server {
  const log = options.log ?? stderrLog;
  const { headerMs, idleMs } = options.timeouts;
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  } catch (error) {
    const where = formatHostPort(options.hostname, options.port);
    if (error instanceof Deno.errors.AddrInUse) {
      throw new Error(`listen tcp ${where}: address already in use`);
    }
    throw new Error(`listen tcp ${where}: ${(error as Error).message}`);
  }
  const bound = listener.addr as Deno.NetAddr;
  const address = formatHostPort(bound.hostname, bound.port);
  const connections = new Set<Connection>();
  let closing = false;
  let changed: (() => void) | null = null;

  const framing = (close: boolean, version: string): ResponseFraming => {
    const extra: [string, string][] = [["Date", httpDate()]];
    if (close) extra.push(["Connection", "close"]);
    else if (version === "HTTP/1.0") extra.push(["Connection", "keep-alive"]);
    return {
      extra,
      unsized: version === "HTTP/1.0" ? "close" : "chunked",
      maxBuffered: 0,
      log: (line) => log(`ERROR: ${line}`),
    };
  };

  const sweepMs = Math.min(
    1000,
    Math.max(50, Math.min(...[headerMs, idleMs].filter((ms) => ms > 0)) / 4),
  );
  const sweepNeeded = headerMs > 0 || idleMs > 0;
  const sweep = sweepNeeded ? startTicker(sweepMs, sweepConnections) : undefined;

  function sweepConnections(): void {
    const now = Date.now();
    for (const connection of connections) {
      if (connection.activity !== connection.seenActivity) {
        connection.seenActivity = connection.activity;
        connection.quietSince = now;
      }
      if (
        connection.headerDeadline > 0 && now >= connection.headerDeadline &&
        connection.betweenRequests
      ) {
        connection.headerDeadline = 0;
        void answerSlowHead(connection);
        continue;
      }
      const waitingOnClient = connection.reading > 0 || connection.writing > 0;
      if (idleMs > 0 && waitingOnClient && now - connection.quietSince >= idleMs) {
        connection.destroy();
      }
    }
  }

  async function answerSlowHead(connection: Connection): Promise<void> {
    try {
      await writeRefusal(connection.output, { status: 408, message: "Request Timeout" }, [
        ["Date", httpDate()],
        ["Connection", "close"],
      ]);
    } catch {
      // the client is gone as well
    }
    connection.destroy();
  }

  async function serveConnection(connection: Connection): Promise<void> {
    const remoteAddr = unmapIpv4((connection.conn.remoteAddr as Deno.NetAddr).hostname ?? "");
    const info: RequestInfo = { remoteAddr, transport: "tcp", heldBodies: true };
    if (headerMs > 0) connection.headerDeadline = Date.now() + headerMs;
    try {
      while (!connection.closed) {
        const head = await readRequestHead(connection.input);
        connection.headerDeadline = 0;
        if (head.kind === "eof") return;
        connection.betweenRequests = false;
        if (head.kind === "fatal") {
          await writeRefusal(connection.output, head.refusal, framing(true, "HTTP/1.1").extra);
          return;
        }
        const body = new RequestBody(connection.input, head.framing);
        const keepAlive = await serveRequest(connection, head, body, info) &&
          await body.discard() && !closing;
        if (!keepAlive) return;
        connection.betweenRequests = true;
        connection.bytesWhenIdle = connection.bytesRead;
        if (headerMs > 0 && idleMs > 0) connection.headerDeadline = Date.now() + headerMs + idleMs;
        changed?.();
      }
    } catch (error) {
      if (!connection.closed && !isConnectionError(error)) {
        log(`ERROR: connection failed: ${errorText(error)}`);
      }
    } finally {
      connection.destroy();
      connections.delete(connection);
      changed?.();
    }
  }

  /** Answers one request. Returns false when the connection must close after it. */
  async function serveRequest(
    connection: Connection,
    head: Extract<RequestHead, { kind: "request" }>,
    body: RequestBody,
    info: RequestInfo,
  ): Promise<boolean> {
    const tokens = connectionTokens(head.headers);
    // a head the parser refused ends the connection after its answer, as node and Go do
    const keepAlive = head.refusal === null &&
      (head.version === "HTTP/1.0" ? tokens.includes("keep-alive") : !tokens.includes("close"));
    const out = connection.output;
    let refusal = head.refusal;
    let request: Request | null = null;
    const controller = new AbortController();
    if (refusal === null) {
      const host = hostField(head.headers);
      const base = `http://${host !== null && HOST.test(host) ? host : address}`;
      const url = requestUrl(base, head.target);
      if (url === null) refusal = { status: 400, message: "unsupported request target" };
      else {
        try {
          const hasBody = body.present && head.method !== "GET" && head.method !== "HEAD";
          request = makeRequest(url, head.method, head.headers, hasBody ? body.stream() : null);
          if (hasBody) offerWholeBody(request, (limit) => body.readWhole(limit));
        } catch {
          refusal = { status: 400, message: "invalid request" };
        }
      }
    }
    if (refusal !== null || request === null) {
      const answer = refusal ?? { status: 400, message: "invalid request" };
      await writeRefusal(out, answer, framing(!keepAlive || closing, head.version).extra);
      return keepAlive;
    }
    setRequestProtocol(request, head.version);

    const expect = request.headers.get("expect");
    if (
      expect !== null && expect.toLowerCase() === "100-continue" && body.present &&
      head.version === "HTTP/1.1"
    ) await writeContinue(out);

    let response: Response;
    connection.controller = controller;
    try {
      response = await handler(request, { ...info, signal: controller.signal });
    } catch (error) {
      log(`ERROR: ${errorText(error)}`);
      response = new Response("Internal Server Error\n", {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8", "content-length": "22" },
      });
    } finally {
      connection.controller = null;
    }
    if (connection.closed) {
      await response.body?.cancel().catch(() => {});
      return false;
    }
    // decided now: a shutdown may have begun while the handler ran
    const responseFraming = framing(!keepAlive || closing, head.version);
    const inSync = await writeResponse(out, response, head.method === "HEAD", responseFraming);
    return inSync && keepAlive;
  }

  async function acceptLoop(): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing || error instanceof Deno.errors.BadResource) return;
        // out of descriptors and the like: the listener itself is fine, try again shortly
        log(`ERROR: accept failed: ${errorText(error)}`);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (closing) {
        conn.close();
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // the peer is already gone; the first read will tell
      }
      const connection = new Connection(conn);
      connections.add(connection);
      void serveConnection(connection);
    }
  }
  const accepting = acceptLoop();

  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => (resolveFinished = resolve));
  let shutdownPromise: Promise<void> | null = null;

  async function shutdown(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    closing = true;
    try {
      listener.close();
    } catch {
      // already closed
    }
    await accepting;
    await new Promise((resolve) => setTimeout(resolve, Math.min(SHUTDOWN_READ_GRACE_MS, graceMs)));
    for (const connection of connections) if (connection.idle) connection.destroy();
    while (connections.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        // while closing, a connection ends after its answer instead of becoming idle
        changed = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      changed = null;
    }
    for (const connection of connections) connection.destroy();
    sweep?.stop();
    resolveFinished();
  }

  return {
    address,
    finished,
    shutdown(graceMs) {
      shutdownPromise ??= shutdown(graceMs);
      return shutdownPromise;
    },
  };
}

/** Errors that only mean the client went away (or the connection was closed here). */
function isConnectionError(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.NotConnected;
}
