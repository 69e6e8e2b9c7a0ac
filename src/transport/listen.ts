// Plain socket listeners: TCP (host:port, :port, [v6]:port) and unix sockets. Each yields a
// running server with its real address and a bounded graceful shutdown. TCP with connection
// timeouts (the default) runs on tcp_h1's listener, since Deno.serve has no header-read or idle
// timeout; TCP with both timeouts off, and unix sockets (local peers only), run on Deno.serve.

import type { Handler } from "../http/types.ts";
import { formatHostPort } from "./node_request.ts";
import { startTcpHttp1 } from "./tcp_h1.ts";
import { type ConnectionTimeouts, DEFAULT_TIMEOUTS, timeoutsEnabled } from "./timeouts.ts";

export interface ListenOptions {
  /** `host:port`, `:port`, `[v6]:port` or `unix:/path`. */
  address: string;
  /** File mode of a unix socket (default 0o660). */
  unixSocketMode?: number;
  /** Header-read and idle timeouts for TCP (default: DEFAULT_TIMEOUTS). */
  timeouts?: ConnectionTimeouts;
  /** Where the TCP listener's errors go (default: stderr). */
  log?: (line: string) => void;
}

export interface RunningServer {
  /** Printable address: `127.0.0.1:8000`, `[::]:8000` or `unix:/path`. */
  address: string;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
  /** Stops accepting, waits for in-flight requests up to `graceMs`, then closes. */
  shutdown(graceMs?: number): Promise<void>;
}

export type ParsedAddress =
  | { kind: "tcp"; hostname: string; port: number }
  | { kind: "unix"; path: string };

/** Parses a --listen value; throws an Error with a one-line message when invalid. */
export function parseListenAddress(address: string): ParsedAddress {
  if (address.startsWith("unix:")) {
    const path = address.slice("unix:".length);
    if (path === "") throw new Error(`invalid listen address "${address}": empty socket path`);
    return { kind: "unix", path };
  }
  const match = /^(?:\[([0-9a-fA-F:.%a-zA-Z]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(address);
  if (!match) throw new Error(`invalid listen address "${address}": expected host:port`);
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`invalid listen address "${address}": port out of range`);
  const hostname = match[1] ?? (match[2] === "" ? "::" : match[2]);
  return { kind: "tcp", hostname, port };
}

/**
 * Counts requests whose handler is still running. Deno.serve's own shutdown cuts request bodies
 * that are still arriving, so a graceful stop first waits here for uploads to finish, answering
 * new requests 503 meanwhile, and only then shuts the server down.
 */
export class InFlight {
  #count = 0;
  #draining = false;
  #idle: (() => void) | null = null;

  wrap(handler: Handler): Handler {
    return async (request, info) => {
      if (this.#draining) {
        return new Response("Service Unavailable\n", {
          status: 503,
          headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "5" },
        });
      }
      this.#count++;
      try {
        return await handler(request, info);
      } finally {
        this.#count--;
        if (this.#count === 0 && this.#idle) this.#idle();
      }
    };
  }

  /** Refuses new requests and resolves once running handlers are done or `ms` passed. */
  drain(ms: number): Promise<void> {
    this.#draining = true;
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

export async function startListener(
  handler: Handler,
  options: ListenOptions,
): Promise<RunningServer> {
  const parsed = parseListenAddress(options.address);
  const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
  if (parsed.kind === "tcp" && timeoutsEnabled(timeouts)) {
    return startTcpListener(handler, parsed, timeouts, options.log);
  }
  const controller = new AbortController();
  const inFlight = new InFlight();
  handler = inFlight.wrap(handler);
  let server: Deno.HttpServer;
  let address: string;
  if (parsed.kind === "unix") {
    let exists = false;
    try {
      await Deno.lstat(parsed.path);
      exists = true;
    } catch {
      // free to use
    }
    if (exists) throw new Error(`listen unix ${parsed.path}: address already in use`);
    server = Deno.serve({
      path: parsed.path,
      signal: controller.signal,
      onListen: () => {},
      onError: () => new Response("Internal Server Error\n", { status: 500 }),
    }, (request) => handler(request, { remoteAddr: "unix", transport: "unix" }));
    await Deno.chmod(parsed.path, options.unixSocketMode ?? 0o660);
    address = `unix:${parsed.path}`;
  } else {
    server = Deno.serve(
      {
        hostname: parsed.hostname,
        port: parsed.port,
        signal: controller.signal,
        onListen: () => {},
        onError: () => new Response("Internal Server Error\n", { status: 500 }),
      },
      (request, info) =>
        handler(request, { remoteAddr: info.remoteAddr.hostname, transport: "tcp" }),
    );
    const addr = server.addr as Deno.NetAddr;
    address = formatHostPort(addr.hostname, addr.port);
  }
  const finished = server.finished.then(async () => {
    if (parsed.kind === "unix") await Deno.remove(parsed.path).catch(() => {});
  });
  return {
    address,
    finished,
    async shutdown(graceMs = 30_000) {
      const deadline = Date.now() + graceMs;
      await inFlight.drain(graceMs);
      graceMs = Math.max(1000, deadline - Date.now());
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          controller.abort();
          resolve();
        }, graceMs);
      });
      await Promise.race([server.shutdown(), timeout]);
      clearTimeout(timer);
      await finished;
    },
  };
}

function startTcpListener(
  handler: Handler,
  parsed: Extract<ParsedAddress, { kind: "tcp" }>,
  timeouts: ConnectionTimeouts,
  log: ((line: string) => void) | undefined,
): RunningServer {
  const server = startTcpHttp1(handler, {
    hostname: parsed.hostname,
    port: parsed.port,
    timeouts,
    log,
  });
  return {
    address: server.address,
    finished: server.finished,
    shutdown: (graceMs = 30_000) => server.shutdown(graceMs),
  };
}
