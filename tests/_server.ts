// Test helpers: start stowage as a real child process on a random loopback port (black-box),
// talk raw HTTP/1.1 over a socket when fetch would normalise the request, and hash fixtures.

import { createHash } from "node:crypto";

export const MAIN = new URL("../main.ts", import.meta.url).pathname;

export interface Child {
  /** Base URL such as http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  port: number;
  /** Lines the server wrote to stderr so far. */
  stderr: string[];
  process: Deno.ChildProcess;
  /** SIGTERM, then wait for exit; returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Resolves when a stderr line matching `pattern` appears (bounded). */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Runs `stowage <args>` and waits for its `start server on` line. */
export async function spawnStowage(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; ready?: RegExp } = {},
): Promise<Child> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
    cwd: options.cwd,
  });
  const process = command.spawn();
  const stderr: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const decoder = new TextDecoder();
  let pending = "";
  const pump = (async () => {
    for await (const chunk of process.stderr) {
      pending += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        stderr.push(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  })();
  // stdout is drained so the child never blocks on it.
  const stdoutPump = (async () => {
    for await (const _ of process.stdout) { /* discard */ }
  })();
  const waitForLine = (pattern: RegExp, timeoutMs = 15_000) => {
    const found = stderr.find((l) => pattern.test(l));
    if (found) return Promise.resolve(found);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(`no stderr line ${pattern} within ${timeoutMs} ms:\n${stderr.join("\n")}`),
        );
      }, timeoutMs);
      waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  };
  let port = 0;
  let url = "";
  const readyPattern = options.ready ?? /^start server on /;
  const exited = process.status;
  const line = await Promise.race([
    waitForLine(readyPattern),
    exited.then((s) => {
      throw new Error(`stowage exited with ${s.code} before it was ready:\n${stderr.join("\n")}`);
    }),
  ]);
  const match = /start server on (?:\[([^\]]+)\]|([^:]+)):(\d+)/.exec(line);
  if (match) {
    port = Number(match[3]);
    url = `http://127.0.0.1:${port}`;
  }
  return {
    url,
    port,
    stderr,
    process,
    waitForLine,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        process.kill(signal);
      } catch {
        // already gone
      }
      const status = await exited;
      await pump.catch(() => {});
      await stdoutPump.catch(() => {});
      return status.code;
    },
  };
}

/** Runs stowage to completion (for CLI tests). */
export async function runStowage(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  });
  const child = command.spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

export interface RawResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text: string;
}

/** Sends bytes on a fresh TCP connection and reads until the server closes (bounded). */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  options: { halfClose?: boolean; timeoutMs?: number; hostname?: string } = {},
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: options.hostname ?? "127.0.0.1", port });
  const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
  let at = 0;
  while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
  if (options.halfClose) await conn.closeWrite();
  const chunks: Uint8Array[] = [];
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, options.timeoutMs ?? 10_000);
  try {
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
  } catch {
    // closed by timer or reset by peer
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return concatChunks(chunks);
}

/** The chunks joined into one buffer. */
export function concatChunks(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/** Parses the first HTTP/1.1 response in `bytes`. */
export function parseRawResponse(bytes: Uint8Array, head = false): RawResponse {
  const text = new TextDecoder("latin1").decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete response in ${JSON.stringify(text.slice(0, 200))}`);
  const lines = text.slice(0, end).split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const length = Number(headers.get("content-length") ?? "0");
  const body = head ? new Uint8Array() : bytes.slice(end + 4, end + 4 + length);
  return { status, headers, body, text: new TextDecoder().decode(body) };
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

/** Lists every file below `dir` (relative paths), for "nothing changed" assertions. */
export async function treeSnapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(path: string, rel: string) {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory) {
        out.set(name + "/", "dir");
        await walk(full, name);
      } else if (entry.isFile) {
        out.set(name, sha256Hex(await Deno.readFile(full)));
      } else {
        out.set(name, "other");
      }
    }
  }
  try {
    await walk(dir, "");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out;
}

/**
 * Runs `body` against `stowage serve --path <fresh temp dir> --listen 127.0.0.1:0 <args>`, then
 * stops the server and removes the directory. `prepare` fills the directory before the start.
 */
export async function withStowage(
  args: string[],
  body: (server: Child, dir: string) => Promise<void>,
  prepare?: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await prepare?.(dir);
    const server = await spawnStowage(["--path", dir, "--listen", "127.0.0.1:0", ...args]);
    try {
      await body(server, dir);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
