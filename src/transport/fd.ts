// systemd socket activation: serving the handler on an inherited listening fd (which fds those
// are is listen_fds.ts's job). Deno.listen cannot adopt an inherited fd, so this uses the
// node:http listener (node_http.ts) with `listen({ fd })`, which can; TCP and unix stream sockets
// both work, with the same header-read and idle timeouts as a TCP listener. It loads Deno's node
// compatibility layer, so it is imported only when systemd passed sockets.

import type { AddressInfo } from "node:net";
import type { Handler } from "../http/types.ts";
import type { RunningServer } from "./listen.ts";
import { errorText, stderrLog } from "./node_bridge.ts";
import { createNodeHttpListener } from "./node_http.ts";
import { type ConnectionTimeouts, DEFAULT_TIMEOUTS } from "./timeouts.ts";

export interface FdServerOptions {
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
  /** Called once the fd is being served. */
  onListen?: (address: string) => void;
  /** Header-read and idle timeouts (default: DEFAULT_TIMEOUTS). */
  timeouts?: ConnectionTimeouts;
}

export interface FdServer {
  /** "host:port" for TCP, the socket path (or "fd:N (unix)") for unix sockets. */
  readonly address: string;
  /** Resolves once the fd is served; rejects if node cannot listen on it. */
  readonly listening: Promise<void>;
  /** Stops accepting, lets running requests finish (up to `graceMs`), closes every connection. */
  close(graceMs?: number): Promise<void>;
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
  const listener = createNodeHttpListener(handler, {
    transport: "fd",
    timeouts: options.timeouts ?? DEFAULT_TIMEOUTS,
    log: (line) => log(`fd: ${line}`),
  });
  const listening = listener.listen({ fd }).then((bound) => {
    address = describeAddress(bound, fd);
    options.onListen?.(address);
  });
  // callers that never look at `listening` still get a log line instead of an unhandled rejection
  listening.catch((error) => log(`fd: cannot listen on fd ${fd}: ${errorText(error)}`));

  return {
    get address() {
      return address;
    },
    listening,
    close: (graceMs = 30_000) => listener.shutdown(graceMs),
  };
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
      await Promise.all(servers.map((s) => s.close(graceMs)));
      resolveFinished();
    },
  };
}
