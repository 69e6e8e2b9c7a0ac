// Multi-store BorgStore serving inside `stowage serve`: requests carrying the BorgStore Accept
// header address a store at /<store>/… (or /<user>/<store>/… with --private-repos). Each store
// is a directory of the data directory with its own provider; a directory that holds a restic
// repository is refused, and the restic side refuses borg stores (see protocol_guard.ts).

import type { Logger } from "../log.ts";
import type { AccessPolicy } from "../policy/access.ts";
import { type QuotaTracker, SharedStoreQuota } from "../policy/quota.ts";
import { type BorgStore, handleBorgstore } from "../protocol/borgstore.ts";
import { drainBody } from "../stream/digest.ts";
import { unsafeKeyReason } from "../storage/keys.ts";
import type { Provider } from "../storage/provider.ts";
import type { ProtocolGuard } from "./protocol_guard.ts";

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
