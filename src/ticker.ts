// Periodic work that must not cost startup: the listener's timeout sweep, the temp-file sweep, the
// quota state saves and the access log flush. In Deno 2.9 the first use of `setTimeout` or
// `setInterval` loads the runtime's node timer implementation, 5–9 ms that a TCP server paid
// before its first answer when its sweep was a `setInterval`. `AbortSignal.timeout` runs on the
// runtime's own timers and loads nothing, so a ticker is a chain of them: each tick arms the next.
// While a ticker runs, its pending signal keeps the process alive, like a plain interval. A
// timeout signal cannot be cancelled, but a signal without an abort listener no longer holds the
// process: `stop()` removes the listener, so the signal still pending fires into nothing and holds
// nothing. Ticks are spaced from the end of the previous tick (fixed delay), which is what a
// sweep wants.

/** A running ticker. */
export interface Ticker {
  /** No more ticks after this, and the process may exit; idempotent. */
  stop(): void;
}

/** Calls `tick` every `intervalMs` until stopped. */
export function startTicker(intervalMs: number, tick: () => void): Ticker {
  let stopped = false;
  let pending: AbortSignal | null = null;
  // runs only while armed: stop() removes it; `stopped` covers a stop() from inside the tick
  const onTimeout = () => {
    pending = null;
    try {
      tick();
    } finally {
      if (!stopped) arm();
    }
  };
  const arm = () => {
    pending = AbortSignal.timeout(intervalMs);
    pending.addEventListener("abort", onTimeout, { once: true });
  };
  arm();
  return {
    stop() {
      stopped = true;
      pending?.removeEventListener("abort", onTimeout);
      pending = null;
    },
  };
}
