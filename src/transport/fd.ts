// systemd socket activation: which inherited fds are listening sockets (LISTEN_FDS/LISTEN_PID),
// and serving the handler on such an fd. Deno.listen cannot adopt an inherited fd, so this uses
// node:http `createServer().listen({ fd })`, which can; TCP and unix stream sockets both work.
// Requests and responses cross between node and web objects through node_bridge.ts (streaming
// both ways, with backpressure; an explicit Content-Length is kept, also on HEAD).

import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Handler, RequestInfo } from "../http/types.ts";
import type { RunningServer } from "./listen.ts";
import {
  errorText,
  headersFromRawPairs,
  makeRequest,
  nodeHeadersFromResponse,
  nodeReadableToWeb,
  pipeWebBodyToNode,
  requestUrl,
  stderrLog,
} from "./node_bridge.ts";

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** Environment access as Deno.env offers it. */
export interface EnvAccess {
  get(key: string): string | undefined;
  delete(key: string): void;
}

export interface ListenFdsOptions {
  /** Require LISTEN_PID (when set) to be our pid, as sd_listen_fds does (default true). */
  checkPid?: boolean;
}

/**
 * The listening fds systemd passed: [3, 3 + LISTEN_FDS). Empty when LISTEN_FDS is unset, not a
 * positive number, or LISTEN_PID is set to another process. LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are removed from the environment so child processes do not inherit them.
 */
export function listenFds(env: EnvAccess = Deno.env, options: ListenFdsOptions = {}): number[] {
  const fdsText = env.get("LISTEN_FDS");
  const pidText = env.get("LISTEN_PID");
  for (const key of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) env.delete(key);
  if (fdsText === undefined || !/^\d+$/.test(fdsText.trim())) return [];
  if ((options.checkPid ?? true) && pidText !== undefined && pidText.trim() !== "") {
    if (!/^\d+$/.test(pidText.trim()) || Number(pidText) !== Deno.pid) return [];
  }
  const count = Number(fdsText);
  if (!Number.isSafeInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
}

export interface FdServerOptions {
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
  /** Called once the fd is being served. */
  onListen?: (address: string) => void;
}

export interface FdServer {
  /** "host:port" for TCP, the socket path (or "fd:N (unix)") for unix sockets. */
  readonly address: string;
  /** Resolves once the fd is served; rejects if node cannot listen on it. */
  readonly listening: Promise<void>;
  /** Stops accepting, ends idle connections, resolves when all connections are gone. */
  close(): Promise<void>;
}

/** The path of a listening unix socket fd, from /proc (Linux); null when unknown. */
function unixSocketPath(fd: number): string | null {
  try {
    const link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode === undefined) return null;
    for (const line of Deno.readTextFileSync("/proc/net/unix").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[6] === inode && fields[7]) return fields[7];
    }
  } catch {
    // not Linux, or /proc is not mounted
  }
  return null;
}

function describeAddress(address: string | AddressInfo | null, fd: number): string {
  if (address === null) return unixSocketPath(fd) ?? `fd:${fd} (unix)`;
  if (typeof address === "string") return address;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `${host}:${address.port}`;
}

/** Serves `handler` on an inherited listening socket `fd` (TCP or unix stream). */
export function serveOnFd(handler: Handler, fd: number, options: FdServerOptions = {}): FdServer {
  const log = options.log ?? stderrLog;
  let address = `fd:${fd}`;

  const server = http.createServer((req, res) => {
    serveNodeRequest(handler, req, res, log).catch((error) => {
      log(`fd: ${errorText(error)}`);
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end();
      } else res.destroy();
    });
  });
  server.on("clientError", (error: Error, socket) => {
    log(`fd: client error: ${errorText(error)}`);
    socket.destroy();
  });

  const listening = new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    server.listen({ fd }, () => {
      server.off("error", onError);
      server.on("error", (error: Error) => log(`fd: server error: ${errorText(error)}`));
      address = describeAddress(server.address(), fd);
      options.onListen?.(address);
      resolve();
    });
  });
  // callers that never look at `listening` still get a log line instead of an unhandled rejection
  listening.catch((error) => log(`fd: cannot listen on fd ${fd}: ${errorText(error)}`));

  return {
    get address() {
      return address;
    },
    listening,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

async function serveNodeRequest(
  handler: Handler,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  log: (line: string) => void,
): Promise<void> {
  const method = req.method ?? "GET";
  const peer = req.socket.remoteAddress;
  const info: RequestInfo = { remoteAddr: peer ?? "unix", transport: "fd" };
  const url = requestUrl("http://" + hostFor(req.headers.host), req.url ?? "");
  const declaredLength = req.headers["content-length"];
  const hasBody = method !== "GET" && method !== "HEAD" &&
    (req.headers["transfer-encoding"] !== undefined ||
      (declaredLength !== undefined && declaredLength !== "0"));
  const bridged = hasBody ? nodeReadableToWeb(req) : null;

  let response: Response;
  let request: Request | null = null;
  if (url !== null) {
    try {
      request = makeRequest(
        url,
        method,
        headersFromRawPairs(req.rawHeaders),
        bridged?.stream ?? null,
      );
    } catch {
      request = null;
    }
  }
  if (request === null) {
    response = new Response("Bad Request", { status: 400 });
  } else {
    try {
      response = await handler(request, info);
    } catch (error) {
      log(`fd: handler failed: ${errorText(error)}`);
      response = new Response("Internal Server Error", { status: 500 });
    }
  }

  try {
    await writeNodeResponse(res, response, method === "HEAD");
  } finally {
    // throw away any request body the handler left unread, keeping the connection usable
    if (bridged !== null) bridged.drain();
    else if (!req.readableEnded) req.resume();
  }
}

/** The Host header if it looks like one, else "localhost" (URL parts come from the target). */
function hostFor(host: string | undefined): string {
  return host !== undefined && /^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host) ? host : "localhost";
}

async function writeNodeResponse(
  res: http.ServerResponse,
  response: Response,
  isHead: boolean,
): Promise<void> {
  const body = response.body;
  const status = response.status;
  res.statusCode = status;
  if (response.statusText) res.statusMessage = response.statusText;
  for (const [name, value] of Object.entries(nodeHeadersFromResponse(response.headers))) {
    res.setHeader(name, value);
  }
  const noBody = isHead || body === null || status === 204 || status === 304;
  if (noBody) {
    if (
      !isHead && body === null && status !== 204 && status !== 304 &&
      !res.hasHeader("content-length")
    ) {
      res.setHeader("content-length", "0");
    }
    await body?.cancel().catch(() => {});
    res.end();
    return;
  }
  await pipeWebBodyToNode(body, res);
}

/** Serves every inherited socket as one RunningServer (rest-server's socket activation mode). */
export async function serveActivated(
  handler: Handler,
  fds: number[],
  options: FdServerOptions = {},
): Promise<RunningServer> {
  const servers = fds.map((fd) => serveOnFd(handler, fd, options));
  await Promise.all(servers.map((s) => s.listening));
  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => (resolveFinished = resolve));
  return {
    address: servers.map((s) => s.address).join(", "),
    finished,
    async shutdown(graceMs = 30_000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.all(servers.map((s) => s.close())), timeout]);
      clearTimeout(timer);
      resolveFinished();
    },
  };
}
