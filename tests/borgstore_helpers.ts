// Test helpers for the BorgStore protocol tests: an in-process server (Deno.serve on
// 127.0.0.1, port 0) over an FsProvider in a temp dir or a MemoryProvider, a fetch wrapper that
// checks the headers every response must carry, raw-socket HTTP/1.1 exchanges, and directory
// snapshots for "nothing changed" assertions.

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { withHeldBody } from "../src/http/held_body.ts";
import { BorgQuota } from "../src/policy/borg_quota.ts";
import type { PermissionMap } from "../src/policy/permissions.ts";
import {
  type BorgStore,
  BORGSTORE_MEDIA_TYPE,
  createBorgstoreServerHandler,
} from "../src/protocol/borgstore.ts";
import { FsProvider } from "../src/storage/fs.ts";
import { MemoryProvider } from "../src/storage/memory.ts";
import type { Provider } from "../src/storage/provider.ts";

export const A = BORGSTORE_MEDIA_TYPE;
export const CACHE = "no-store, no-cache, must-revalidate, max-age=0";

export interface ServerOptions {
  /** Use a MemoryProvider instead of a temp directory. */
  memory?: boolean;
  /** Reuse this directory (its `store` subdirectory is the store). */
  dir?: string;
  permissions?: PermissionMap;
  /** Quota limit; undefined/null = no quota (a BorgQuota without limit, like the CLI). */
  quota?: number | null;
  /** Run `POST /?cmd=create` before returning. */
  create?: boolean;
  /** Basic-auth credentials required by the server. */
  auth?: { username: string; password: string };
}

export interface TestServer {
  url: string;
  port: number;
  /** The temp directory (parent of the store). */
  dir: string;
  /** The store's base directory ("" for memory stores). */
  root: string;
  store: BorgStore;
  close(): Promise<void>;
}

/** Basic auth as in spec §8: scheme case-insensitive, split at the first ":". */
export function basicAuthenticator(username: string, password: string) {
  return (request: Request): Promise<string | null> => {
    const header = request.headers.get("authorization") ?? "";
    const space = header.indexOf(" ");
    if (space < 0 || header.slice(0, space).toLowerCase() !== "basic") return Promise.resolve(null);
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(
        Uint8Array.from(atob(header.slice(space + 1).trim()), (c) => c.charCodeAt(0)),
      );
    } catch {
      return Promise.resolve(null);
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) return Promise.resolve(null);
    const ok = decoded.slice(0, colon) === username && decoded.slice(colon + 1) === password;
    return Promise.resolve(ok ? username : null);
  };
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "stowage-borg-" });
  const root = options.memory ? "" : `${dir}/store`;
  const provider: Provider = options.memory
    ? new MemoryProvider({ rootExists: false })
    : new FsProvider(root);
  const quota = options.memory ? null : new BorgQuota(root, options.quota ?? null);
  const store: BorgStore = { provider, permissions: options.permissions ?? null, quota };
  const auth = options.auth;
  const handler = createBorgstoreServerHandler({
    store,
    authenticate: auth
      ? basicAuthenticator(auth.username, auth.password)
      : () => Promise.resolve("anonymous"),
  });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (request) => withHeldBody(await handler(request)),
  );
  const port = server.addr.port;
  const result: TestServer = {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    root,
    store,
    async close() {
      await server.shutdown();
      await quota?.close();
      if (options.dir === undefined) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  if (options.create) {
    const created = await call(result, "POST", "/?cmd=create", { auth: options.auth });
    assertEquals(created.status, 200, created.text);
  }
  return result;
}

export interface CallOptions {
  body?: Uint8Array<ArrayBuffer> | string | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
  /** Accept header; null omits it. Default: the BorgStore media type. */
  accept?: string | null;
  auth?: { username: string; password: string };
}

export interface CallResult {
  status: number;
  headers: Headers;
  bytes: Uint8Array;
  text: string;
}

/** One request through fetch; asserts Cache-Control and Content-Length on the response. */
export async function call(
  server: TestServer,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<CallResult> {
  const headers = new Headers(options.headers);
  const accept = options.accept === undefined ? A : options.accept;
  if (accept !== null) headers.set("accept", accept);
  if (options.auth) {
    headers.set(
      "authorization",
      `Basic ${btoa(`${options.auth.username}:${options.auth.password}`)}`,
    );
  }
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: options.body,
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  assertEquals(response.headers.get("cache-control"), CACHE, `${method} ${path}: Cache-Control`);
  assert(response.headers.has("content-length"), `${method} ${path}: Content-Length missing`);
  assertEquals(response.headers.get("transfer-encoding"), null);
  if (method !== "HEAD") {
    assertEquals(Number(response.headers.get("content-length")), bytes.byteLength);
  }
  return {
    status: response.status,
    headers: response.headers,
    bytes,
    text: new TextDecoder().decode(bytes),
  };
}

export interface RawResponse {
  version: string;
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
  text: string;
}

/**
 * Sends raw bytes on one TCP connection and reads `methods.length` responses framed by
 * Content-Length (no body for HEAD). Optionally half-closes the connection after writing.
 */
export async function rawExchange(
  port: number,
  request: Uint8Array | string,
  methods: string[],
  options: { closeWrite?: boolean; timeoutMs?: number } = {},
): Promise<RawResponse[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), options.timeoutMs ?? 5000);
  try {
    const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
    let at = 0;
    while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
    if (options.closeWrite) await conn.closeWrite();
    const reader = new BufferedReader(conn);
    const responses: RawResponse[] = [];
    for (const method of methods) {
      const statusLine = await reader.line();
      if (statusLine === null) break;
      const [version, code] = statusLine.split(" ");
      const headers = new Map<string, string>();
      for (
        let line = await reader.line();
        line !== null && line !== "";
        line = await reader.line()
      ) {
        const colon = line.indexOf(":");
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const length = method === "HEAD" ? 0 : Number(headers.get("content-length") ?? "0");
      const body = await reader.exactly(length);
      responses.push({
        version,
        status: Number(code),
        headers,
        body,
        text: new TextDecoder().decode(body),
      });
    }
    return responses;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timeout
    }
  }
}

class BufferedReader {
  #buffer = new Uint8Array(0);
  constructor(private readonly conn: Deno.Conn) {}

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch {
      return false;
    }
    if (n === null) return false;
    const next = new Uint8Array(this.#buffer.byteLength + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.byteLength);
    this.#buffer = next;
    return true;
  }

  async line(): Promise<string | null> {
    while (true) {
      const at = this.#buffer.indexOf(10);
      if (at >= 0) {
        const line = new TextDecoder().decode(this.#buffer.subarray(0, at)).replace(/\r$/, "");
        this.#buffer = this.#buffer.subarray(at + 1);
        return line;
      }
      if (!(await this.#fill())) return null;
    }
  }

  async exactly(n: number): Promise<Uint8Array> {
    while (this.#buffer.byteLength < n) {
      if (!(await this.#fill())) break;
    }
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(Math.min(n, this.#buffer.byteLength));
    return out;
  }
}

/** A raw HTTP/1.1 request with the BorgStore Accept header and a Content-Length. */
export function rawRequest(
  method: string,
  target: string,
  body = "",
  extraHeaders: string[] = [],
): string {
  const headers = [`Host: test`, `Accept: ${A}`, ...extraHeaders];
  if (method === "POST" || method === "DELETE" || body !== "") {
    headers.push(`Content-Length: ${new TextEncoder().encode(body).byteLength}`);
  }
  return `${method} ${target} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n${body}`;
}

/** Sorted "path size sha-prefix" lines for every entry below `dir` (symlinks not followed). */
export async function snapshot(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string, rel: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory) {
        lines.push(`${name}/`);
        await walk(full, name);
      } else if (entry.isSymlink) {
        lines.push(`${name} -> ${await Deno.readLink(full)}`);
      } else {
        const data = await Deno.readFile(full);
        lines.push(`${name} ${data.byteLength} ${sha256Hex(data).slice(0, 16)}`);
      }
    }
  };
  try {
    await walk(dir, "");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return ["<missing>"];
    throw error;
  }
  return lines.sort();
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
