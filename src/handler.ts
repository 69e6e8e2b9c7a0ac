// The one place that assembles the request handler from its parts: the restic protocol, borg
// stores chosen by the BorgStore Accept header, /health, /metrics and the access log, over one
// provider with one protocol guard. `stowage serve` (server.ts) and the library API (mod.ts)
// both build their handler here, so an embedded handler answers exactly like the server.
// The BorgStore side (the router and the protocol, an eighth of the code) is imported on the first
// BorgStore request: a restic server does not load it before its first answer.

import type { BorgRouterOptions } from "./http/borg_router.ts";
import { ProtocolGuard } from "./http/protocol_guard.ts";
import { type AccessRecord, createDispatcher } from "./http/dispatch.ts";
import type { Handler, RequestInfo } from "./http/types.ts";
import type { Logger } from "./log.ts";
import type { AccessPolicy } from "./policy/access.ts";
import type { QuotaTracker } from "./policy/quota.ts";
import { createResticHandler, type ResticMetrics } from "./protocol/restic.ts";
import { PrefixProvider } from "./storage/prefixed.ts";
import type { Provider } from "./storage/provider.ts";

export interface HandlerParts {
  /** Holds every restic repository and borg store (keys relative to the data root). */
  provider: Provider;
  /**
   * A provider rooted at one borg store directory (`dir` is a validated key). Default: a
   * PrefixProvider view of `provider`, which works for every provider.
   */
  storeProvider?: (dir: string) => Provider;
  /** The user name ("" when anonymous) or null when the request is not authenticated. */
  authenticate: (request: Request) => Promise<string | null>;
  /** Permissions (and extra quotas) per user, repository and protocol. */
  policy: AccessPolicy;
  /** Borg stores live at /<user>/<store>/ instead of /<store>/ (private repos with auth). */
  userStores: boolean;
  /** Verify the SHA-256 of restic uploads against their object ID. */
  verifyUpload: boolean;
  /** The data root's total size limit, shared by restic uploads and borg stores. */
  quota: QuotaTracker | null;
  /** Serve borg stores for requests with the BorgStore Accept header. */
  borgstore: boolean;
  /** Receives restic blob counters (Prometheus). */
  resticMetrics?: ResticMetrics | null;
  /** Serves the exact path /metrics. */
  metrics?: (request: Request) => Promise<Response>;
  accessLog?: (record: AccessRecord) => void;
  log: Logger;
}

/** Builds the handler every transport (or an embedding application) calls. */
export function composeHandler(parts: HandlerParts): Handler {
  const { provider, authenticate, policy, log } = parts;
  const guard = new ProtocolGuard(provider);
  const restic = createResticHandler({
    provider,
    authenticate,
    guard: (repoKey) => guard.require(repoKey, "restic"),
    policy,
    verifyUpload: parts.verifyUpload,
    quota: parts.quota,
    metrics: parts.resticMetrics ?? null,
    log,
  });
  const borgstore = parts.borgstore
    ? lazyBorgRouter({
      provider,
      storeProvider: parts.storeProvider ?? ((dir) => new PrefixProvider(provider, dir)),
      authenticate,
      policy,
      privateRepos: parts.userStores,
      guard,
      quota: parts.quota,
      log,
    })
    : undefined;
  return createDispatcher({
    restic,
    borgstore,
    metrics: parts.metrics,
    accessLog: parts.accessLog,
    log,
  });
}

type BorgRouter = (request: Request, info: RequestInfo) => Promise<Response>;

/** The borg router, imported and built when the first BorgStore request arrives. */
function lazyBorgRouter(options: BorgRouterOptions): BorgRouter {
  let router: Promise<BorgRouter> | null = null;
  return async (request, info) => {
    router ??= import("./http/borg_router.ts").then((module) => module.createBorgRouter(options));
    return await (await router)(request, info);
  };
}
