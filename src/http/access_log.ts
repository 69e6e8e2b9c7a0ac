// The access log of --log FILE|- : one line per request, in Apache combined format exactly as
// rest-server writes it, or one JSON object per line with --log-format json. No credentials reach
// the log (no Authorization header, no userinfo, secret-looking query parameters redacted) and
// client-controlled text is escaped. Lines are buffered and written in the background (flushed
// every second, at 64 KiB, and on close), so logging never waits for the disk.
//
// Byte count: the response's declared Content-Length (HEAD included, as rest-server counts what
// the handler wrote); a streamed body of unknown length is logged as `-` (combined) or null (JSON).

import type { AccessRecord } from "./dispatch.ts";
import { pathOf } from "./dispatch.ts";
import { escapeLogText } from "../log.ts";
import { requestProtocol } from "./request_protocol.ts";
import { startTicker } from "../ticker.ts";

export type AccessLogFormat = "combined" | "json";

export interface AccessLog {
  write(record: AccessRecord): void;
  /** Flushes everything written so far and closes the file (stdout stays open). */
  close(): Promise<void>;
}

const FLUSH_BYTES = 64 * 1024;
const FLUSH_INTERVAL_MS = 1000;
/** Lines beyond this much unwritten text are dropped (and counted) rather than kept in memory. */
const MAX_BACKLOG = 16 * 1024 * 1024;

const SECRET_NAME = /pass|pwd|token|secret|key|auth|credential|signature|session/i;

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

/** The raw query string (without "?") with the values of secret-looking parameters redacted. */
export function redactQuery(query: string): string {
  if (query === "") return "";
  return query.split("&").map((part) => {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    return SECRET_NAME.test(decodeName(name)) ? `${name}=REDACTED` : part;
  }).join("&");
}

/** Path and query of a request URL as sent (never scheme, host or userinfo), query redacted. */
export function requestTarget(url: string): { path: string; query: string } {
  const path = pathOf(url);
  const q = url.indexOf("?", url.indexOf("//") + 2);
  if (q < 0) return { path, query: "" };
  const h = url.indexOf("#", q);
  return { path, query: redactQuery(url.slice(q + 1, h < 0 ? undefined : h)) };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** `dd/Mon/yyyy:HH:MM:SS ±zzzz` in local time. */
export function clfTime(date: Date): string {
  const offset = -date.getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return `${pad(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ` +
    `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

/** Text inside a quoted field: control characters and backslash escaped, quotes as \". */
function quoted(text: string): string {
  return escapeLogText(text).replace(/"/g, '\\"');
}

function startTime(record: AccessRecord): Date {
  return new Date(Date.now() - (performance.now() - record.started));
}

/** One combined-format line (no newline). */
export function formatCombined(record: AccessRecord): string {
  const { request } = record;
  const { path, query } = requestTarget(request.url);
  const uri = query === "" && !request.url.includes("?") ? path : `${path}?${query}`;
  const protocol = requestProtocol(request);
  const bytes = record.bytes === null ? "-" : String(record.bytes);
  return `${escapeLogText(record.info.remoteAddr)} - - [${clfTime(startTime(record))}] ` +
    `"${quoted(request.method)} ${quoted(uri)} ${protocol}" ${record.status} ${bytes} ` +
    `"${quoted(request.headers.get("referer") ?? "")}" ` +
    `"${quoted(request.headers.get("user-agent") ?? "")}"`;
}

/** One JSON line (no newline); duration_ms is the time until the response headers were ready. */
export function formatJson(record: AccessRecord): string {
  const { request } = record;
  const { path, query } = requestTarget(request.url);
  return JSON.stringify({
    time: startTime(record).toISOString(),
    remote: record.info.remoteAddr,
    method: request.method,
    path,
    query,
    status: record.status,
    bytes: record.bytes,
    duration_ms: Math.round((performance.now() - record.started) * 1000) / 1000,
    user_agent: request.headers.get("user-agent") ?? "",
    referer: request.headers.get("referer") ?? "",
    transport: record.info.transport,
    protocol: requestProtocol(request),
  });
}

interface Sink {
  write(bytes: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();

function report(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(`access log: ${line}\n`));
  } catch {
    // stderr gone as well
  }
}

/** Collects lines and writes them to `sink` in order, in the background. */
class LineBuffer {
  #lines: string[] = [];
  #size = 0;
  #inFlight = 0;
  #dropped = 0;
  #failed = false;
  #chain: Promise<void> = Promise.resolve();
  readonly #sink: Sink;

  constructor(sink: Sink) {
    this.#sink = sink;
  }

  push(line: string): void {
    if (this.#size + this.#inFlight + line.length > MAX_BACKLOG) {
      this.#dropped++;
      return;
    }
    this.#lines.push(line, "\n");
    this.#size += line.length + 1;
    if (this.#size >= FLUSH_BYTES) void this.flush();
  }

  flush(): Promise<void> {
    if (this.#size === 0) return this.#chain;
    const text = this.#lines.join("");
    const size = this.#size;
    this.#lines = [];
    this.#size = 0;
    this.#inFlight += size;
    this.#chain = this.#chain.then(async () => {
      try {
        const bytes = encoder.encode(text);
        let at = 0;
        while (at < bytes.byteLength) at += await this.#sink.write(bytes.subarray(at));
        this.#failed = false;
      } catch (error) {
        if (!this.#failed) report(`write failed: ${(error as Error).message}`);
        this.#failed = true;
      } finally {
        this.#inFlight -= size;
      }
      if (this.#dropped > 0 && this.#inFlight === 0) {
        report(`${this.#dropped} lines dropped (writer too slow)`);
        this.#dropped = 0;
      }
    });
    return this.#chain;
  }
}

/** Opens the access log: a file (append, created with mode 0640) or "-" for stdout. */
export async function openAccessLog(target: string, format: AccessLogFormat): Promise<AccessLog> {
  let file: Deno.FsFile | null = null;
  if (target !== "-") {
    try {
      file = await Deno.open(target, { append: true, create: true, mode: 0o640 });
    } catch (error) {
      throw new Error(`cannot open access log ${target}: ${(error as Error).message}`);
    }
  }
  const output = file;
  const buffer = new LineBuffer(output ?? Deno.stdout);
  const flusher = startTicker(FLUSH_INTERVAL_MS, () => void buffer.flush());
  const formatLine = format === "json" ? formatJson : formatCombined;
  let closed = false;
  return {
    write(record) {
      if (closed) return;
      buffer.push(formatLine(record));
    },
    async close() {
      if (closed) return;
      closed = true;
      flusher.stop();
      await buffer.flush();
      output?.close();
    },
  };
}
