// HTTP client side of the bench: a minimal HTTP/1.1 keep-alive client over one TCP connection
// (Content-Length or chunked responses, bodies fed to a sink or collected), and a pool of N
// concurrent async loops, each with its own keep-alive connection. A raw client rather than
// fetch: Deno's fetch sends streamed bodies chunked (restic sends Content-Length), and with
// several concurrent 16 MiB uploads to rclone it moved ~60 MiB/s where a socket moves ~400 MiB/s
// on the same machine, so the client, not the server, would have been measured.

export class BenchFailure extends Error {}

export type Body = Uint8Array | { length: number; chunks: Iterable<Uint8Array> };

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Body;
  /** Receives every response body chunk (a view, valid only during the call). */
  sink?: (chunk: Uint8Array) => void;
  /** Collect the response body into `body`. Error bodies (≥ 400) are always collected. */
  collect?: boolean;
}

export interface Answer {
  status: number;
  /** Lower-case header names. */
  headers: Map<string, string>;
  body: Uint8Array | null;
  /** Response body bytes received. */
  length: number;
}

const CR = 13;
const LF = 10;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const ERROR_BODY_LIMIT = 1024 * 1024;

class ConnectionClosed extends Error {}

/** One keep-alive HTTP/1.1 connection to 127.0.0.1:<port>; requests are sequential. */
export class H1Connection {
  #conn: Deno.TcpConn | null = null;
  #buffer = new Uint8Array(256 * 1024);
  #start = 0;
  #end = 0;
  #used = false;

  constructor(readonly port: number) {}

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = null;
    this.#start = this.#end = 0;
    this.#used = false;
  }

  async request(path: string, options: RequestOptions = {}): Promise<Answer> {
    const reused = this.#used && this.#conn !== null;
    try {
      return await this.#once(path, options);
    } catch (error) {
      this.close();
      // A kept-alive connection the server closed meanwhile: retry once on a fresh one.
      const stale = error instanceof ConnectionClosed || error instanceof Deno.errors.BrokenPipe ||
        error instanceof Deno.errors.ConnectionReset;
      if (reused && stale) return await this.#once(path, options);
      throw error;
    }
  }

  async #once(path: string, options: RequestOptions): Promise<Answer> {
    if (this.#conn === null) {
      this.#conn = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
      this.#conn.setNoDelay(true);
    }
    this.#used = true;
    const method = options.method ?? "GET";
    const body = options.body;
    const length = body === undefined ? 0 : body.length;
    let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\n`;
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      head += `${name}: ${value}\r\n`;
    }
    if (body !== undefined || method === "POST" || method === "PUT") {
      head += `Content-Length: ${length}\r\n`;
    }
    const headBytes = encoder.encode(head + "\r\n");
    if (body instanceof Uint8Array && body.byteLength <= 64 * 1024) {
      const both = new Uint8Array(headBytes.byteLength + body.byteLength);
      both.set(headBytes, 0);
      both.set(body, headBytes.byteLength);
      await this.#write(both);
    } else {
      await this.#write(headBytes);
      if (body instanceof Uint8Array) await this.#write(body);
      else if (body !== undefined) { for (const chunk of body.chunks) await this.#write(chunk); }
    }
    return await this.#readAnswer(method, options);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.byteLength) at += await this.#conn!.write(bytes.subarray(at));
  }

  /** Reads more bytes into the buffer; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buffer.byteLength) {
      if (this.#start > 0) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buffer.byteLength * 2);
        bigger.set(this.#buffer);
        this.#buffer = bigger;
      }
    }
    const n = await this.#conn!.read(this.#buffer.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Returns the text up to (excluding) the next `\r\n` (or `\r\n\r\n` when `block`). */
  async #readUntil(block: boolean, atStart: boolean): Promise<string> {
    const stop = block ? 4 : 2;
    let scanned = 0; // bytes after #start known not to begin the terminator (#fill keeps them)
    while (true) {
      for (let i = this.#start + scanned; i + stop <= this.#end; i++) {
        if (
          this.#buffer[i] === CR && this.#buffer[i + 1] === LF &&
          (!block || (this.#buffer[i + 2] === CR && this.#buffer[i + 3] === LF))
        ) {
          const text = latin1.decode(this.#buffer.subarray(this.#start, i));
          this.#start = i + stop;
          return text;
        }
      }
      const buffered = this.#end - this.#start;
      scanned = Math.max(0, buffered - stop + 1);
      if (!(await this.#fill())) {
        if (atStart && buffered === 0) throw new ConnectionClosed("connection closed by server");
        throw new BenchFailure("connection closed in the middle of a response");
      }
    }
  }

  /** Passes exactly `n` body bytes to `take`. */
  async #readBody(n: number, take: (chunk: Uint8Array) => void): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#start === this.#end && !(await this.#fill())) {
        throw new BenchFailure(`connection closed with ${left} body bytes missing`);
      }
      const count = Math.min(left, this.#end - this.#start);
      take(this.#buffer.subarray(this.#start, this.#start + count));
      this.#start += count;
      left -= count;
    }
  }

  async #readAnswer(method: string, options: RequestOptions): Promise<Answer> {
    const head = await this.#readUntil(true, true);
    const lines = head.split("\r\n");
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!match) throw new BenchFailure(`not an HTTP answer: ${lines[0].slice(0, 100)}`);
    const status = Number(match[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) {
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    }
    const collect = options.collect || status >= 400;
    const parts: Uint8Array[] = [];
    let length = 0;
    const take = (chunk: Uint8Array) => {
      length += chunk.byteLength;
      options.sink?.(chunk);
      if (collect && (options.collect || length <= ERROR_BODY_LIMIT)) parts.push(chunk.slice());
    };
    const noBody = method === "HEAD" || status === 204 || status === 304 || status < 200;
    let closeAfter = (headers.get("connection") ?? "").toLowerCase() === "close";
    if (!noBody) {
      if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
        while (true) {
          const size = parseInt((await this.#readUntil(false, false)).split(";")[0], 16);
          if (!Number.isFinite(size)) throw new BenchFailure("bad chunk size in response");
          if (size === 0) {
            while ((await this.#readUntil(false, false)) !== "") {
              // trailers
            }
            break;
          }
          await this.#readBody(size, take);
          await this.#readUntil(false, false);
        }
      } else if (headers.has("content-length")) {
        await this.#readBody(Number(headers.get("content-length")), take);
      } else {
        while (true) {
          if (this.#start < this.#end) {
            take(this.#buffer.subarray(this.#start, this.#end));
            this.#start = this.#end;
          }
          if (!(await this.#fill())) break;
        }
        closeAfter = true;
      }
    }
    if (closeAfter) this.close();
    return { status, headers, body: collect ? concat(parts) : null, length };
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** One request on a fresh connection (setup calls). */
export async function requestOnce(
  port: number,
  path: string,
  options: RequestOptions = {},
): Promise<Answer> {
  const conn = new H1Connection(port);
  try {
    return await conn.request(path, options);
  } finally {
    conn.close();
  }
}

/** Throws a BenchFailure naming the request unless the status is one of `expected`. */
export function expectStatus(answer: Answer, expected: number[], what: string): void {
  if (expected.includes(answer.status)) return;
  const text = answer.body ? new TextDecoder().decode(answer.body.subarray(0, 300)) : "";
  throw new BenchFailure(`${what}: HTTP ${answer.status} (expected ${expected.join("/")}) ${text}`);
}

export interface PoolResult {
  /** Requests completed. */
  count: number;
  seconds: number;
  /** Payload bytes moved (as counted by the jobs). */
  bytes: number;
}

/**
 * Runs jobs 0..count-1 on `concurrency` loops, each loop with its own keep-alive connection. A
 * job gets its index, its loop's connection and the loop number (for per-loop buffers) and
 * returns the payload bytes it moved, or throws; the first error stops the pool and is rethrown.
 */
export async function runPool(
  port: number,
  count: number,
  concurrency: number,
  job: (index: number, conn: H1Connection, loop: number) => Promise<number>,
): Promise<PoolResult> {
  const loops = Math.max(1, Math.min(concurrency, count));
  const conns = Array.from({ length: loops }, () => new H1Connection(port));
  let next = 0;
  let bytes = 0;
  let failure: unknown = null;
  const started = performance.now();
  const loop = async (loop: number) => {
    while (failure === null && next < count) {
      const index = next++;
      try {
        // Read the total only after the job: `bytes += await job()` would read it before the
        // await, so concurrent loops would overwrite each other's counts.
        const moved = await job(index, conns[loop], loop);
        bytes += moved;
      } catch (error) {
        failure ??= error;
      }
    }
  };
  try {
    await Promise.all(conns.map((_, i) => loop(i)));
  } finally {
    for (const conn of conns) conn.close();
  }
  const seconds = (performance.now() - started) / 1000;
  if (failure !== null) throw failure;
  return { count, seconds, bytes };
}
