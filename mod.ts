/**
 * stowage as a library: a fetch-style handler that serves restic repositories (REST protocol
 * v1/v2, as rest-server) and Borg 2 stores (BorgStore REST, chosen by the Accept header) from
 * any storage provider, for `Deno.serve`, another Deno application or any runtime that speaks
 * web `Request`/`Response`.
 *
 * ```ts
 * import { createHandler, MemoryProvider } from "./mod.ts";
 *
 * Deno.serve({ port: 8000 }, createHandler({ provider: new MemoryProvider() }));
 * ```
 *
 * Built on the same modules as `stowage serve` (src/handler.ts), so an embedded handler answers
 * exactly as the server does.
 *
 * @module
 */

import { htpasswdAuth } from "./src/http/auth.ts";
import { HtpasswdFile } from "./src/http/htpasswd.ts";
import type { RequestInfo } from "./src/http/types.ts";
import { composeHandler } from "./src/handler.ts";
import type { Logger } from "./src/log.ts";
import { flagPolicy } from "./src/policy/access.ts";
import { QuotaTracker } from "./src/policy/quota.ts";
import type { Provider } from "./src/storage/provider.ts";

export type {
  BeginOptions,
  ByteRange,
  Entry,
  Provider,
  Stat,
  Upload,
} from "./src/storage/provider.ts";
export { compareNames } from "./src/storage/provider.ts";
export { FsProvider, type FsProviderOptions } from "./src/storage/fs.ts";
export { MemoryProvider } from "./src/storage/memory.ts";
export { PrefixProvider } from "./src/storage/prefixed.ts";
export { assertSafeKey, unsafeKeyReason } from "./src/storage/keys.ts";
export { type ErrorKind, StowageError } from "./src/errors.ts";
export { type Logger, memoryLogger } from "./src/log.ts";
export type { RequestInfo } from "./src/http/types.ts";
export { VERSION } from "./src/version.ts";

/** Decides who sent a request: a user name, or null to answer 401. */
export interface CustomAuth {
  /** Resolves to the user name ("" for anonymous access) or null when not authenticated. */
  authenticate(request: Request): Promise<string | null>;
}

/** Basic authentication against an htpasswd file (bcrypt, {SHA}, $apr1$, $5$, $6$). */
export interface HtpasswdAuth {
  /** Path of the file; re-read when it changes (checked at most every 30 s). */
  htpasswd: string;
}

/**
 * Who may use the handler: `"none"` (anyone who can reach it may read, write and delete
 * backups), an htpasswd file, or a custom function.
 */
export type AuthOption = "none" | HtpasswdAuth | CustomAuth;

export interface HandlerOptions {
  /** Where repositories and stores live (required), e.g. `new FsProvider("/srv/backup")`. */
  provider: Provider;
  /** Authentication (default `"none"`). */
  auth?: AuthOption;
  /**
   * Clients may add but not remove: restic may delete only locks, borg stores get borg's
   * `no-delete` mode (default false).
   */
  appendOnly?: boolean;
  /**
   * User `alice` reaches only `/alice/…`: restic repositories `/alice/<repo>/`, borg stores
   * `/alice/<store>/` (default false). Needs authentication.
   */
  privateRepos?: boolean;
  /** Refuse restic uploads whose SHA-256 differs from their object ID (default true). */
  verifyUpload?: boolean;
  /**
   * Limit in bytes of everything stored, restic and borg together (default 0: no limit). The
   * current usage is measured by listing the provider before the first request is answered.
   */
  maxSize?: number;
  /**
   * Serve borg stores to requests carrying the BorgStore Accept header, on the same handler
   * (default true, as `stowage serve`).
   */
  borgstore?: boolean;
  /**
   * Where log lines go: a Logger, or a function receiving info and error lines (default: errors
   * and info lines on stderr via console.error, no debug lines).
   */
  log?: Logger | ((line: string) => void);
}

/**
 * A fetch-style handler. The optional second argument is the connection info of `Deno.serve`
 * (or a stowage RequestInfo); other runtimes may omit it.
 */
export interface StowageHandler {
  (request: Request, info?: unknown): Promise<Response>;
  /**
   * Resolves once the handler is initialised (htpasswd loaded, quota measured); rejects with the
   * reason when that failed, in which case every request is answered with 500.
   */
  readonly ready: Promise<void>;
}

function toLogger(log: HandlerOptions["log"]): Logger {
  if (log === undefined) {
    return {
      debugEnabled: false,
      info: (line) => console.error(line),
      error: (line) => console.error(line),
      debug: () => {},
    };
  }
  if (typeof log === "function") {
    return { debugEnabled: false, info: log, error: log, debug: () => {} };
  }
  return log;
}

/** Converts Deno.serve's connection info (or a RequestInfo) into the dispatcher's RequestInfo. */
function requestInfo(info: unknown): RequestInfo {
  const remote = (info as { remoteAddr?: unknown } | undefined)?.remoteAddr;
  if (typeof remote === "string") return info as RequestInfo;
  if (remote && typeof remote === "object") {
    const addr = remote as { transport?: string; hostname?: string };
    if (addr.transport === "unix" || addr.transport === "unixpacket") {
      return { remoteAddr: "unix", transport: "unix" };
    }
    if (typeof addr.hostname === "string") return { remoteAddr: addr.hostname, transport: "tcp" };
  }
  return { remoteAddr: "-", transport: "tcp" };
}

/** Sum of the sizes of every object the provider holds (0 when its root does not exist). */
async function measureProvider(provider: Provider): Promise<number> {
  if (await provider.stat("") === null) return 0;
  let total = 0;
  const pending = [""];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for await (const entry of provider.list(dir)) {
      if (entry.isDirectory) pending.push(dir === "" ? entry.name : `${dir}/${entry.name}`);
      else total += entry.size;
    }
  }
  return total;
}

function validate(options: HandlerOptions): void {
  if (!options || typeof options.provider?.stat !== "function") {
    throw new TypeError("createHandler: options.provider must be a Provider");
  }
  const auth = options.auth ?? "none";
  if (
    auth !== "none" && !(typeof auth === "object" &&
      (typeof (auth as HtpasswdAuth).htpasswd === "string" ||
        typeof (auth as CustomAuth).authenticate === "function"))
  ) {
    throw new TypeError(
      'createHandler: options.auth must be "none", { htpasswd: path } or { authenticate }',
    );
  }
  if (options.privateRepos && auth === "none") {
    throw new TypeError("createHandler: privateRepos needs authentication (options.auth)");
  }
  const maxSize = options.maxSize ?? 0;
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
    throw new TypeError("createHandler: options.maxSize must be a non-negative integer");
  }
}

/**
 * Creates the stowage request handler over `options.provider`.
 *
 * restic clients use `rest:http://host:port/<repo>/` (or `/<user>/<repo>/` with
 * `privateRepos`); borg clients use `http://host:port/<store>/` on the same handler. `/health`
 * answers `200 ok` without authentication. Throws TypeError on invalid options; failures that
 * need I/O (htpasswd file, measuring the quota) reject `handler.ready`.
 */
export function createHandler(options: HandlerOptions): StowageHandler {
  validate(options);
  const log = toLogger(options.log);
  const provider = options.provider;
  const auth = options.auth ?? "none";
  const authEnabled = auth !== "none";
  const maxSize = options.maxSize ?? 0;

  async function initialise(): Promise<(request: Request, info: RequestInfo) => Promise<Response>> {
    let authenticate: (request: Request) => Promise<string | null>;
    if (auth === "none") {
      authenticate = () => Promise.resolve("");
    } else if ("htpasswd" in auth) {
      const file = await HtpasswdFile.load(auth.htpasswd, (line) => log.info(line));
      const authenticator = htpasswdAuth(file);
      authenticate = (request) => authenticator.authenticate(request);
    } else {
      authenticate = (request) => auth.authenticate(request);
    }
    const quota = maxSize > 0 ? new QuotaTracker(maxSize, await measureProvider(provider)) : null;
    return composeHandler({
      provider,
      authenticate,
      policy: flagPolicy({
        appendOnly: options.appendOnly ?? false,
        privateRepos: options.privateRepos ?? false,
        authEnabled,
      }),
      userStores: (options.privateRepos ?? false) && authEnabled,
      verifyUpload: options.verifyUpload ?? true,
      quota,
      borgstore: options.borgstore ?? true,
      log,
    });
  }

  const inner = initialise();
  const ready = inner.then(() => {});
  // Marks the rejection as handled: it is reported by `ready` and by every request.
  ready.catch(() => {});
  let reported = false;

  const handler = async (request: Request, info?: unknown): Promise<Response> => {
    let handle: (request: Request, info: RequestInfo) => Promise<Response>;
    try {
      handle = await inner;
    } catch (error) {
      if (!reported) {
        reported = true;
        log.error(`stowage: handler initialisation failed: ${(error as Error).message}`);
      }
      await request.body?.cancel().catch(() => {});
      return new Response("Internal Server Error\n", {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
    return await handle(request, requestInfo(info));
  };
  return Object.assign(handler, { ready });
}
export { S3Provider, type S3ProviderOptions } from "./src/storage/s3.ts";
export {
  createS3Provider,
  parseS3Backend,
  S3ConfigError,
  type S3Settings,
} from "./src/storage/s3_config.ts";
