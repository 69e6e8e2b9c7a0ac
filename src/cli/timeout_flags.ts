// The two connection-timeout flags shared by `stowage serve` and the borgstore-server-rest
// personality: --read-header-timeout and --idle-timeout, durations such as "30s", "10m", "1h",
// or 0 to turn one off.

import { type FlagSpec, type FlagValues, UsageError } from "./flags.ts";
import { parseDuration } from "./units.ts";
import { type ConnectionTimeouts, DEFAULT_TIMEOUTS } from "../transport/timeouts.ts";

export const TIMEOUT_FLAGS: FlagSpec[] = [
  {
    name: "read-header-timeout",
    type: "string",
    value: "DURATION",
    defaultText: "60s",
    help: "close a connection that has not sent a complete request head in time (0 = never)",
  },
  {
    name: "idle-timeout",
    type: "string",
    value: "DURATION",
    defaultText: "10m",
    help: "close a connection idle or stalled this long; never a running transfer (0 = never)",
  },
];

/** Parses "0" or a duration such as "30s", "10m", "1h30m" into milliseconds. */
export function parseTimeout(flag: string, text: string): number {
  const trimmed = text.trim();
  if (/^0+$/.test(trimmed)) return 0;
  const ms = parseDuration(trimmed);
  if (ms === null) {
    throw new UsageError(`invalid --${flag} "${text}": expected a duration like 30s, 10m or 0`);
  }
  return ms;
}

export function timeoutsFrom(values: FlagValues): ConnectionTimeouts {
  const header = values["read-header-timeout"] as string | undefined;
  const idle = values["idle-timeout"] as string | undefined;
  return {
    headerMs: header === undefined
      ? DEFAULT_TIMEOUTS.headerMs
      : parseTimeout("read-header-timeout", header),
    idleMs: idle === undefined ? DEFAULT_TIMEOUTS.idleMs : parseTimeout("idle-timeout", idle),
  };
}
