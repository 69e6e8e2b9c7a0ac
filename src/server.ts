// Wiring for `stowage serve`: from a validated ServeConfig to providers, policy, quota,
// authentication and the one handler, plus the startup lines rest-server prints. Metrics, the
// access log and config-file quotas are imported only when they are configured.

import type { ServeConfig } from "./cli/serve_config.ts";
import { type ConfigFile, configHasQuotas } from "./cli/config_file.ts";
import { borgStoreDepth, grantPolicy } from "./policy/grants.ts";
import type { QuotaScopes } from "./policy/quota_scopes.ts";
import { type Authenticator, htpasswdAuth, noAuth, proxyAuth } from "./http/auth.ts";
import { HtpasswdFile } from "./http/htpasswd.ts";
import type { AccessLog } from "./http/access_log.ts";
import type { RepoStats } from "./http/repo_stats.ts";
import type { ResticMetrics } from "./protocol/restic.ts";
import type { Handler } from "./http/types.ts";
import type { Logger } from "./log.ts";
import { flagPolicy } from "./policy/access.ts";
import { measureTree, QuotaTracker } from "./policy/quota.ts";
import { FsProvider } from "./storage/fs.ts";
import { StartupError } from "./errors.ts";
import type { Provider } from "./storage/provider.ts";
import type { S3Provider } from "./storage/s3.ts";
import { createS3Provider, S3ConfigError } from "./storage/s3_config.ts";
import { composeHandler } from "./handler.ts";
import { startTicker, type Ticker } from "./ticker.ts";

/** Temp files untouched this long belong to uploads that will never finish. */
const TEMP_FILE_MAX_AGE_MS = 60 * 60 * 1000;
const TEMP_SWEEP_INTERVAL_MS = 6 * 60 * 60 * 1000;

export interface BuiltServer {
  handler: Handler;
  /** Removes temp files of uploads abandoned by a crashed run (background, periodic). */
  startMaintenance(): void;
  /** Reloads what can be reloaded (htpasswd users). */
  reload(): Promise<void>;
  /** Flushes and closes the access log. */
  close(): Promise<void>;
}

async function buildAuthenticator(
  config: ServeConfig,
  log: Logger,
): Promise<{ authenticator: Authenticator; htpasswd: HtpasswdFile | null }> {
  if (config.noAuth) {
    log.info("Authentication disabled");
    return { authenticator: noAuth(), htpasswd: null };
  }
  if (config.proxyAuthUsername) {
    log.info("Proxy Authentication enabled.");
    return { authenticator: proxyAuth(config.proxyAuthUsername), htpasswd: null };
  }
  log.info("Authentication enabled");
  let file: HtpasswdFile;
  try {
    file = await HtpasswdFile.load(config.htpasswdFile, (line) => log.info(line));
  } catch (error) {
    throw new StartupError(
      `cannot load ${config.htpasswdFile} (use --no-auth to disable): ${(error as Error).message}`,
    );
  }
  return { authenticator: htpasswdAuth(file), htpasswd: file };
}

async function buildQuota(config: ServeConfig, log: Logger): Promise<QuotaTracker | null> {
  if (config.maxSize <= 0) return null;
  log.info("Initializing quota (can take a while)...");
  let usage: number;
  try {
    await Deno.lstat(config.path);
    usage = await measureTree(config.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new StartupError(`lstat ${config.path}: no such file or directory`);
    }
    throw new StartupError(`cannot measure ${config.path}: ${(error as Error).message}`);
  }
  log.info(`Quota initialized, currently using ${(usage / 2 ** 30).toFixed(2)} GiB`);
  return new QuotaTracker(config.maxSize, usage);
}

/** The S3 provider of `--backend s3://…`, checked before anything is served. */
async function openS3(config: ServeConfig, log: Logger): Promise<S3Provider> {
  let s3: S3Provider;
  try {
    s3 = await createS3Provider(config.s3!);
  } catch (error) {
    if (error instanceof S3ConfigError) throw new StartupError(error.message);
    throw error;
  }
  log.info(`Data: ${s3.description}`);
  try {
    await s3.check();
  } catch (error) {
    throw new StartupError((error as Error).message);
  }
  return s3;
}

/** --max-size over a provider: the usage is measured by listing it once. */
async function buildProviderQuota(
  config: ServeConfig,
  provider: Provider,
  log: Logger,
): Promise<QuotaTracker | null> {
  if (config.maxSize <= 0) return null;
  log.info("Initializing quota (can take a while)...");
  let usage = 0;
  const pending = [""];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for await (const entry of provider.list(dir)) {
      if (entry.isDirectory) pending.push(dir === "" ? entry.name : `${dir}/${entry.name}`);
      else usage += entry.size;
    }
  }
  log.info(`Quota initialized, currently using ${(usage / 2 ** 30).toFixed(2)} GiB`);
  return new QuotaTracker(config.maxSize, usage);
}

interface Metrics {
  stats: RepoStats;
  blobEvents: ResticMetrics;
  /** Serves /metrics. */
  handler: (request: Request) => Promise<Response>;
}

/** --prometheus: the registry, the repository statistics it reports and the /metrics handler. */
async function buildMetrics(
  config: ServeConfig,
  parts: {
    quota: QuotaTracker | null;
    scopes: QuotaScopes | null;
    authenticate: (request: Request) => Promise<string | null>;
    /** A config file's grants decide who may read which repository's metrics. */
    grants: boolean;
  },
): Promise<Metrics> {
  const [{ metricsHandler, MetricsRegistry }, { RepoStats }] = await Promise.all([
    import("./http/metrics.ts"),
    import("./http/repo_stats.ts"),
  ]);
  const stats = new RepoStats();
  const { scopes } = parts;
  const registry = new MetricsRegistry({
    quota: parts.quota,
    repositoryUsage: () => stats.usage(),
    lastSnapshot: () => stats.snapshots(),
    scopedQuotas: scopes ? () => scopedQuotaSamples(scopes) : undefined,
  });
  return {
    stats,
    blobEvents: {
      blob(op, labels, bytes) {
        registry.blob(op, labels, bytes);
        stats.blob(op, labels, bytes);
      },
    },
    handler: metricsHandler(registry, {
      authenticate: parts.authenticate,
      noAuth: config.prometheusNoAuth,
      privateRepos: config.privateRepos || parts.grants,
      authEnabled: !config.noAuth,
    }),
  };
}

export async function buildServer(
  config: ServeConfig,
  log: Logger,
  file: ConfigFile | null = null,
): Promise<BuiltServer> {
  const s3 = config.s3 === null ? null : await openS3(config, log);
  if (s3 === null) log.info(`Data directory: ${config.path}`);
  if (s3 !== null && file !== null && configHasQuotas(file)) {
    throw new StartupError("quotas of a config file need --path (not --backend s3://…)");
  }
  const { authenticator, htpasswd } = await buildAuthenticator(config, log);
  const userStores = config.privateRepos && !config.noAuth;
  const scopes = s3 === null && file && (configHasQuotas(file) || config.maxSize > 0)
    ? await (await import("./policy/quota_scopes.ts")).QuotaScopes.open({
      root: config.path,
      grants: file.grants,
      quotas: file.quotas,
      privateRepos: userStores,
      maxSize: config.maxSize,
      log: (line: string) => log.info(line),
    })
    : null;
  const quota = scopes
    ? scopes.global
    : s3 !== null
    ? await buildProviderQuota(config, s3, log)
    : await buildQuota(config, log);
  log.info(`Append only mode ${config.appendOnly ? "enabled" : "disabled"}`);
  log.info(`Private repositories ${config.privateRepos ? "enabled" : "disabled"}`);
  log.info(`Group accessible repos ${config.groupAccessibleRepos ? "enabled" : "disabled"}`);
  const fsOptions = {
    dirMode: config.groupAccessibleRepos ? 0o770 : 0o700,
    fileMode: config.groupAccessibleRepos ? 0o660 : 0o600,
    warn: (line: string) => log.error(line),
  };
  const fsProvider = s3 === null ? new FsProvider(config.path, fsOptions) : null;
  const provider: Provider = s3 ?? fsProvider!;
  const storeProviders = new Map<string, FsProvider>();
  const storeProvider = fsProvider === null ? undefined : (dir: string) => {
    let found = storeProviders.get(dir);
    if (!found) {
      if (storeProviders.size > 1000) storeProviders.clear();
      found = new FsProvider(fsProvider.path(dir), fsOptions);
      storeProviders.set(dir, found);
    }
    return found;
  };
  const authenticate = (request: Request) => authenticator.authenticate(request);
  const policy = file
    ? grantPolicy(file.grants, {
      appendOnly: config.appendOnly,
      privateRepos: config.privateRepos,
      authEnabled: !config.noAuth,
      quotas: scopes ?? undefined,
    })
    : flagPolicy({
      appendOnly: config.appendOnly,
      privateRepos: config.privateRepos,
      authEnabled: !config.noAuth,
    });
  const prometheus = config.prometheus
    ? await buildMetrics(config, { quota, scopes, authenticate, grants: file?.grants != null })
    : null;
  const stats = prometheus?.stats ?? null;
  let accessLog: AccessLog | null = null;
  if (config.log !== null) {
    const { openAccessLog } = await import("./http/access_log.ts");
    try {
      accessLog = await openAccessLog(config.log, config.logFormat);
    } catch (error) {
      throw new StartupError(`cannot open log ${config.log}: ${(error as Error).message}`);
    }
  }
  const handler = composeHandler({
    provider,
    storeProvider,
    authenticate,
    policy,
    userStores: borgStoreDepth(file?.grants ?? null, userStores) === 2,
    verifyUpload: config.verifyUpload,
    quota,
    borgstore: true,
    resticMetrics: prometheus?.blobEvents,
    metrics: prometheus?.handler,
    accessLog: accessLog ? (record) => accessLog.write(record) : undefined,
    log,
  });
  let sweepTicker: Ticker | undefined;
  const sweep = () =>
    (s3 !== null
      ? s3.sweepUploads(TEMP_FILE_MAX_AGE_MS).then((n) => {
        if (n > 0) log.info(`Aborted ${n} abandoned multipart upload(s)`);
      })
      : fsProvider!.sweepTempFiles(TEMP_FILE_MAX_AGE_MS).then((removed) => {
        if (removed.files === 0) return;
        // Every swept file was there when the quota was measured at start (uploads of this
        // process clean up after themselves), so its bytes come off the usage.
        quota?.adjust(-removed.bytes);
        log.info(`Removed ${removed.files} abandoned upload temp file(s)`);
      })).catch((error) => log.error(`upload sweep failed: ${(error as Error).message}`));
  return {
    handler,
    startMaintenance() {
      sweep();
      if (s3 === null) {
        stats?.scan(config.path).catch((error) => log.error(`repository scan failed: ${error}`));
      }
      scopes?.startPeriodicSave(60_000, (line: string) => log.error(line));
      sweepTicker = startTicker(TEMP_SWEEP_INTERVAL_MS, sweep);
    },
    async reload() {
      if (htpasswd) await htpasswd.reload();
    },
    async close() {
      sweepTicker?.stop();
      await scopes?.close();
      await accessLog?.close();
    },
  };
}

function* scopedQuotaSamples(scopes: QuotaScopes) {
  const snapshot = scopes.usageSnapshot();
  for (const scope of ["repo", "user", "grant"] as const) {
    for (const [name, usage] of Object.entries(snapshot[scope])) {
      yield { scope, name, used: usage.used, limit: usage.limit };
    }
  }
}
