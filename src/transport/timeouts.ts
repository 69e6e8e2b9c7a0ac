// Connection timeouts: a header-read timeout and an idle timeout against slowloris-style clients,
// and never a total-transfer deadline, so a long but healthy upload or download is never cut.
// ConnectionGuard applies them on the listeners built on node:http / node:http2 (TLS, socket
// activation); the default plain-TCP listener (tcp_h1.ts) keeps the same rules with its own sweep.
//
// - Header read: a new connection must deliver a complete request head within `headerMs`; after
//   a response, the next head must be complete within `idleMs + headerMs`.
// - Idle: a connection on which no bytes move for `idleMs` is closed when it is idle between
//   requests, when the client stalls an upload, or when it stops reading a response. It is kept
//   when the server itself is the one not moving (handler still working, or the body held back
//   by backpressure from storage): the timer is then armed again.
// 0 turns a timeout off. ConnectionGuard also counts requests per connection, which the graceful
// shutdown of these listeners uses to close connections as soon as they are idle.

import type { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";

export interface ConnectionTimeouts {
  /** Milliseconds to receive a complete request head; 0 = no limit. */
  headerMs: number;
  /** Milliseconds without any bytes moving before an idle or stalled connection is closed. */
  idleMs: number;
}

export const DEFAULT_TIMEOUTS: ConnectionTimeouts = { headerMs: 60_000, idleMs: 600_000 };
export const NO_TIMEOUTS: ConnectionTimeouts = { headerMs: 0, idleMs: 0 };

export function timeoutsEnabled(timeouts: ConnectionTimeouts): boolean {
  return timeouts.headerMs > 0 || timeouts.idleMs > 0;
}

/** What the request body and the response look like when a connection has been quiet. */
export interface TransferView {
  /** The request, with node's IncomingMessage / Http2ServerRequest `complete` flag. */
  request: Readable & { complete?: boolean };
  response: Writable;
}

/**
 * Decides what to do with a request whose connection (or HTTP/2 stream) moved no bytes for the
 * idle time: "close" when the client is the one stalling, "wait" when the server is.
 */
export function stalledBy(view: TransferView, queuedOnSocket: number): "client" | "server" {
  const { request, response } = view;
  if (!request.complete && !request.readableEnded) {
    // body still arriving: paused means the server holds it back (handler not reading yet,
    // or storage slower than the network); flowing means the client stopped sending
    return request.isPaused() ? "server" : "client";
  }
  if (queuedOnSocket > 0 || response.writableLength > 0 || response.writableNeedDrain) {
    return "client"; // response bytes wait for a client that does not read them
  }
  return "server"; // the handler is still working on the answer
}

interface ConnectionState {
  active: number;
  /** socket.bytesRead when the connection last became idle: more means a request is coming. */
  bytesWhenIdle: number;
  view: TransferView | null;
  headerTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the pending head must be complete (ms since epoch); 0 = no head pending. */
  headerDeadline: number;
  /** Run once no request is in progress any more (see afterRequests). */
  whenIdle: (() => void)[];
}

/** Tracks the connections of one listener and applies the timeouts to them. */
export class ConnectionGuard {
  readonly #timeouts: ConnectionTimeouts;
  readonly #connections = new Map<Socket, ConnectionState>();
  #closing = false;
  #changed: (() => void) | null = null;

  constructor(timeouts: ConnectionTimeouts) {
    this.#timeouts = timeouts;
  }

  /** Number of open connections. */
  get size(): number {
    return this.#connections.size;
  }

  /** Called whenever a connection closes or becomes idle (used by shutdown). */
  onChange(callback: (() => void) | null): void {
    this.#changed = callback;
  }

  /** Starts watching a new connection (HTTP/1.1 over TCP or TLS). */
  watch(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const state: ConnectionState = {
      active: 0,
      bytesWhenIdle: 0,
      view: null,
      headerTimer: undefined,
      headerDeadline: 0,
      whenIdle: [],
    };
    this.#connections.set(socket, state);
    socket.once("close", () => {
      clearTimeout(state.headerTimer);
      this.#connections.delete(socket);
      this.#changed?.();
    });
    if (this.#timeouts.idleMs > 0) {
      socket.setTimeout(this.#timeouts.idleMs);
      socket.on("timeout", () => this.#onQuiet(socket, state));
    }
    this.#armHeaderTimer(socket, state, this.#timeouts.headerMs);
  }

  /** A request head arrived on `socket`. */
  requestStarted(socket: Socket, view: TransferView): void {
    const state = this.#connections.get(socket);
    if (state === undefined) return;
    state.headerDeadline = 0; // the timer, if armed, finds nothing to do and stops
    state.active++;
    state.view = view;
  }

  /** The response to a request on `socket` is complete (or abandoned). */
  requestFinished(socket: Socket): void {
    const state = this.#connections.get(socket);
    if (state === undefined) return;
    state.active = Math.max(0, state.active - 1);
    if (state.active > 0) return;
    state.view = null;
    state.bytesWhenIdle = socket.bytesRead;
    for (const callback of state.whenIdle.splice(0)) callback();
    if (this.#closing) {
      socket.end();
      return;
    }
    const { headerMs, idleMs } = this.#timeouts;
    if (headerMs > 0 && idleMs > 0) this.#armHeaderTimer(socket, state, headerMs + idleMs);
    this.#changed?.();
  }

  /**
   * For a request whose body broke its framing midway (node reports it as a client error): ends
   * the body of the request in progress as aborted, and runs `callback` once its handler is
   * done (at once when no request is in progress). The client thus hears back only after the
   * server has cleaned up, as with Deno.serve.
   */
  afterBrokenRequest(socket: Socket, callback: () => void): void {
    const state = this.#connections.get(socket);
    if (state === undefined || state.active === 0) {
      callback();
      return;
    }
    state.whenIdle.push(callback);
    const request = state.view?.request;
    // "aborted" is what node emits when a body is cut off; the body bridge ends with an error
    if (request !== undefined && !request.complete) request.emit("aborted");
  }

  /**
   * Refuses new connections and ends those that are idle. A connection on which part of a
   * request has already arrived is not idle: its request is served, then it is ended. Bytes
   * already on their way get a moment to be read first.
   */
  close(): void {
    this.#closing = true;
    const endIdle = () => {
      for (const [socket, state] of this.#connections) {
        if (state.active === 0 && socket.bytesRead === state.bytesWhenIdle) socket.end();
      }
    };
    setTimeout(endIdle, 100);
  }

  /** Destroys every connection still open (end of a shutdown's grace period). */
  destroyAll(): void {
    for (const socket of this.#connections.keys()) socket.destroy();
  }

  /**
   * Sets the deadline for the next request head. One timer per connection serves many requests:
   * it is armed only when none is pending, and on firing re-arms itself for a later deadline.
   */
  #armHeaderTimer(socket: Socket, state: ConnectionState, ms: number): void {
    if (ms <= 0) return;
    // one second of slack lets node:http's own header check answer 408 first where it runs
    state.headerDeadline = Date.now() + ms + 1000;
    if (state.headerTimer !== undefined) return;
    const fire = () => {
      state.headerTimer = undefined;
      if (state.active > 0 || state.headerDeadline === 0) return;
      const left = state.headerDeadline - Date.now();
      if (left > 0) schedule(left);
      else socket.destroy();
    };
    const schedule = (delay: number) => {
      state.headerTimer = setTimeout(fire, delay);
      // a pending header timer must not keep the process alive on its own
      (state.headerTimer as { unref?: () => void }).unref?.();
    };
    schedule(ms + 1000);
  }

  #onQuiet(socket: Socket, state: ConnectionState): void {
    if (state.active === 0 || state.view === null) {
      socket.destroy();
      return;
    }
    if (stalledBy(state.view, socket.writableLength) === "client") socket.destroy();
    else socket.setTimeout(this.#timeouts.idleMs);
  }
}
