// Multi-store BorgStore serving inside `stowage serve`: requests carrying the BorgStore Accept
// header address a store at /<store>/… (or /<user>/<store>/… with --private-repos). Each store
// is a directory of the data directory with its own provider; a directory that holds a restic
// repository is refused, and the restic side refuses borg stores (see ProtocolGuard).

import { StowageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AccessPolicy } from "../policy/access.ts";
import { type QuotaTracker, SharedStoreQuota } from "../policy/quota.ts";
import { type BorgStore, handleBorgstore } from "../protocol/borgstore.ts";
import { drainBody } from "../stream/digest.ts";
import { unsafeKeyReason } from "../storage/keys.ts";
import type { Provider } from "../storage/provider.ts";

export type StoreProtocol = "restic" | "borg" | "unknown";

const RESTIC_NAMES = new Set(["data", "index", "keys", "locks", "snapshots", "config"]);
const RESTIC_TYPES = ["data", "index", "keys", "locks", "snapshots"];
const UNKNOWN_TTL_MS = 5_000;

/**
 * Keeps the two protocols apart on disk: a directory holding a restic repository is never served
 * as a borg store and the other way round, a borg store never lies inside or around a restic
 * repository, and no store lies inside another. Definite answers are remembered.
 */
export class ProtocolGuard {
  /** Definite answers forever; "unknown" reused for a few seconds for ancestors and children. */
  readonly #known = new Map<string, { protocol: StoreProtocol; until: number }>();

  constructor(private readonly provider: Provider) {}

  async #isDir(path: string): Promise<boolean> {
    return (await this.provider.stat(path))?.isDirectory === true;
  }

  /** restic: a `config` file next to its type directories, or all five type directories. */
  async protocolOf(dir: string, allowStale = false): Promise<StoreProtocol> {
    const cached = this.#known.get(dir);
    if (cached && (cached.protocol !== "unknown" || (allowStale && cached.until > Date.now()))) {
      return cached.protocol;
    }
    const at = (name: string) => (dir === "" ? name : `${dir}/${name}`);
    const config = await this.provider.stat(at("config"));
    let protocol: StoreProtocol = "unknown";
    if (config?.isDirectory) protocol = "borg";
    else if (await this.#isDir(at("packs")) || await this.#isDir(at("archives"))) protocol = "borg";
    else if (
      config !== null && (await this.#isDir(at("keys")) || await this.#isDir(at("snapshots")))
    ) {
      protocol = "restic";
    } else {
      let all = true;
      for (const type of RESTIC_TYPES) {
        if (!(await this.#isDir(at(type)))) {
          all = false;
          break;
        }
      }
      if (all) protocol = "restic";
    }
    if (this.#known.size > 10_000) this.#known.clear();
    this.#known.set(dir, {
      protocol,
      until: protocol === "unknown" ? Date.now() + UNKNOWN_TTL_MS : Infinity,
    });
    return protocol;
  }

  #conflict(message: string): StowageError {
    return new StowageError("Conflict", message);
  }

  /** Throws Conflict when `dir` cannot be used by `protocol`. */
  async require(dir: string, protocol: "restic" | "borg"): Promise<void> {
    const own = await this.protocolOf(dir);
    const describe = (p: StoreProtocol) => (p === "borg" ? "a borg store" : "a restic repository");
    if (own !== "unknown" && own !== protocol) throw this.#conflict(`/${dir}/ is ${describe(own)}`);
    const segments = dir === "" ? [] : dir.split("/");
    if (protocol === "borg" && RESTIC_NAMES.has(segments[0])) {
      throw this.#conflict(`/${segments[0]}/ is reserved for the restic repository at /`);
    }
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join("/");
      const found = await this.protocolOf(ancestor, true);
      if (found === "borg" || (found === "restic" && protocol === "borg")) {
        throw this.#conflict(`/${dir}/ lies inside ${describe(found)} (/${ancestor}/)`);
      }
    }
    if (protocol === "borg" && own === "unknown" && dir !== "") {
      // A new store must not swallow restic repositories below it (destroy would remove them).
      try {
        for await (const child of this.provider.list(dir)) {
          if (
            child.isDirectory && await this.protocolOf(`${dir}/${child.name}`, true) === "restic"
          ) {
            throw this.#conflict(`/${dir}/ holds the restic repository /${dir}/${child.name}/`);
          }
        }
      } catch (error) {
        if (error instanceof StowageError && error.kind === "Conflict") throw error;
        // a missing directory holds nothing
      }
    }
  }

  /** Forgets a directory (after a destroy). */
  forget(dir: string): void {
    this.#known.delete(dir);
  }
}

export interface BorgRouterOptions {
  /** Provider of the whole data directory (for the protocol guard). */
  provider: Provider;
  /** A provider rooted at one store directory (`dir` is a validated key). */
  storeProvider: (dir: string) => Provider;
  authenticate: (request: Request) => Promise<string | null>;
  /** Permission maps for borg stores (append-only becomes borg's no-delete mode). */
  policy: AccessPolicy;
  /** Stores live at /<user>/<store>/ instead of /<store>/. */
  privateRepos: boolean;
  guard: ProtocolGuard;
  /** The data directory's quota (--max-size), shared with restic uploads. */
  quota: QuotaTracker | null;
  log: Logger;
}

const METHODS = new Set(["GET", "HEAD", "POST", "DELETE"]);
const CACHE_CONTROL = "no-store, no-cache, must-revalidate, max-age=0";

function plain(
  status: number,
  message: string,
  method: string,
  headers: Record<string, string> = {},
) {
  const body = new TextEncoder().encode(message);
  return new Response(method === "HEAD" ? null : body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "content-length": String(body.byteLength),
      "cache-control": CACHE_CONTROL,
      ...headers,
    },
  });
}

/** Splits `/<a>/<b>/rest` into the store directory segments and the path inside the store. */
function splitStorePath(rawPath: string, depth: number): { store: string[]; rest: string } | null {
  const path = "/" + rawPath.replace(/^\/+/, "");
  const parts = path.split("/");
  if (parts.length < depth + 2) return null; // needs "/<store>/" at least
  const store = parts.slice(1, depth + 1);
  for (const segment of store) {
    if (segment === "" || unsafeKeyReason(segment) !== null || segment.includes("%")) return null;
  }
  return { store, rest: "/" + parts.slice(depth + 1).join("/") };
}

/** The quotas a store write counts against, tightest scope first; null when none applies. */
function storeQuota(global: QuotaTracker | null, scoped: QuotaTracker[]): SharedStoreQuota | null {
  const trackers = [...scoped, ...(global ? [global] : [])];
  return trackers.length === 0 ? null : new SharedStoreQuota(trackers);
}

export function createBorgRouter(options: BorgRouterOptions) {
  const { log } = options;
  return async (request: Request): Promise<Response> => {
    const method = request.method;
    let response: Response;
    if (!METHODS.has(method)) {
      response = plain(501, `Unsupported method ('${method}')`, method);
    } else {
      const user = await options.authenticate(request);
      if (user === null) {
        response = plain(401, "Unauthorized", method, {
          "www-authenticate": 'Basic realm="BorgStore REST Server"',
        });
      } else {
        response = await routeToStore(request, user);
      }
    }
    await drainBody(request);
    return response;
  };

  async function routeToStore(request: Request, user: string): Promise<Response> {
    const url = new URL(request.url);
    const split = splitStorePath(url.pathname, options.privateRepos ? 2 : 1);
    if (split === null) {
      return plain(404, "no store in the request path: use /<store>/…", request.method);
    }
    const access = options.policy.resolve(user, split.store, "borg");
    if (access === null) return plain(403, "Forbidden", request.method);
    const dir = split.store.join("/");
    try {
      await options.guard.require(dir, "borg");
    } catch (error) {
      log.debug(`borgstore request refused: ${(error as Error).message}`);
      return plain(409, (error as Error).message, request.method);
    }
    const store: BorgStore = {
      provider: options.storeProvider(dir),
      permissions: access.permissions,
      quota: storeQuota(options.quota, access.quotas ?? []),
      log: (message) => log.error(message),
    };
    const response = await handleBorgstore(request, store, split.rest);
    if (url.searchParams.get("cmd") === "destroy") options.guard.forget(dir);
    return response;
  }
}
