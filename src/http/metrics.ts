// Prometheus metrics for --prometheus: rest-server's six blob counters (same names, HELP texts and
// labels; a series appears on first use), stowage's own gauges (repository usage, newest snapshot,
// quota, process), rendered as text exposition 0.0.4, and the /metrics handler with rest-server's
// access rules (--prometheus-no-auth, the `metrics` user under --private-repos) and optional gzip.

import type { BlobOperation, ResticMetrics } from "../protocol/restic.ts";
import { resticError } from "../protocol/restic_response.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsOptions {
  /** Bytes used per repository (`repo` as the blob label: folder components joined by "/"). */
  repositoryUsage?: () => Iterable<{ repo: string; bytes: number }>;
  /** Modification time of the newest snapshot per repository, in seconds since the epoch. */
  lastSnapshot?: () => Iterable<{ repo: string; seconds: number }>;
  /** The quota (a QuotaTracker fits); exported as a limit/usage gauge pair when given. */
  quota?: { readonly limit: number; usage(): number } | null;
  /** Per-scope quotas (config file): scope is "repo", "user" or "grant", name its key. */
  scopedQuotas?: () => Iterable<{ scope: string; name: string; used: number; limit: number }>;
  /** Export stowage_process_* and stowage_open_fds (default true). */
  processMetrics?: boolean;
}

interface Series {
  repo: string;
  type: string;
  user: string;
  count: number;
  bytes: number;
}

const BLOB_HELP: Record<BlobOperation, { total: string; bytes: string }> = {
  read: {
    total: "Total number of blobs read",
    bytes: "Total number of bytes read from blobs",
  },
  write: {
    total: "Total number of blobs written",
    bytes: "Total number of bytes written to blobs",
  },
  delete: {
    total: "Total number of blobs deleted",
    bytes: "Total number of bytes of blobs deleted",
  },
};

const OPERATIONS: BlobOperation[] = ["delete", "read", "write"];

type Sample = { labels: [string, string][]; value: number };

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: Sample[];
}

/** Escapes a label value: backslash, double quote and line feed (exposition format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.toWellFormed().replace(
    /[\\"\n]/g,
    (c) => c === "\\" ? "\\\\" : c === '"' ? '\\"' : "\\n",
  );
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\\" ? "\\\\" : "\\n");
}

/** A sample value as Prometheus parses it (Go's ParseFloat syntax). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function renderFamily(family: Family): string {
  if (family.samples.length === 0) return "";
  let out = `# HELP ${family.name} ${
    escapeHelp(family.help)
  }\n# TYPE ${family.name} ${family.type}\n`;
  for (const sample of family.samples) {
    const labels = sample.labels.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`);
    const labelText = labels.length === 0 ? "" : `{${labels.join(",")}}`;
    out += `${family.name}${labelText} ${formatValue(sample.value)}\n`;
  }
  return out;
}

/** Per-repository samples from a callback: duplicates merged by `merge`, sorted by repo. */
function perRepo<T>(
  source: (() => Iterable<T>) | undefined,
  pick: (item: T) => [string, number],
  merge: (a: number, b: number) => number,
): Sample[] {
  if (!source) return [];
  const values = new Map<string, number>();
  try {
    for (const item of source()) {
      const [repo, value] = pick(item);
      if (typeof value !== "number" || Number.isNaN(value)) continue;
      const previous = values.get(repo);
      values.set(repo, previous === undefined ? value : merge(previous, value));
    }
  } catch {
    // a failing source must not break the scrape: its family is left out
    return [];
  }
  return [...values].sort(([a], [b]) => compare(a, b)).map(([repo, value]) => ({
    labels: [["repo", repo]],
    value,
  }));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function openFds(): number | null {
  try {
    let count = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
    return count;
  } catch {
    return null;
  }
}

export class MetricsRegistry implements ResticMetrics {
  readonly #blobs = new Map<BlobOperation, Map<string, Series>>(
    OPERATIONS.map((op) => [op, new Map()]),
  );
  readonly #options: MetricsOptions;

  constructor(options: MetricsOptions = {}) {
    this.#options = options;
  }

  /** Counts one blob operation (rest-server's counters); negative or odd byte counts add 0. */
  blob(
    op: BlobOperation,
    labels: { user: string; repo: string; type: string },
    bytes: number,
  ): void {
    const table = this.#blobs.get(op);
    if (!table) return;
    const key = `${labels.repo}\u0000${labels.type}\u0000${labels.user}`;
    let series = table.get(key);
    if (!series) {
      series = { repo: labels.repo, type: labels.type, user: labels.user, count: 0, bytes: 0 };
      table.set(key, series);
    }
    series.count += 1;
    if (Number.isFinite(bytes) && bytes > 0) series.bytes += bytes;
  }

  #families(): Family[] {
    const families: Family[] = [];
    for (const op of OPERATIONS) {
      const series = [...this.#blobs.get(op)!.values()].sort((a, b) =>
        compare(a.repo, b.repo) || compare(a.type, b.type) || compare(a.user, b.user)
      );
      const labels = (s: Series): [string, string][] => [
        ["repo", s.repo],
        ["type", s.type],
        ["user", s.user],
      ];
      families.push({
        name: `rest_server_blob_${op}_bytes_total`,
        help: BLOB_HELP[op].bytes,
        type: "counter",
        samples: series.map((s) => ({ labels: labels(s), value: s.bytes })),
      });
      families.push({
        name: `rest_server_blob_${op}_total`,
        help: BLOB_HELP[op].total,
        type: "counter",
        samples: series.map((s) => ({ labels: labels(s), value: s.count })),
      });
    }
    const options = this.#options;
    families.push({
      name: "stowage_repository_usage_bytes",
      help: "Bytes stored per repository",
      type: "gauge",
      samples: perRepo(options.repositoryUsage, (u) => [u.repo, u.bytes], (a, b) => a + b),
    });
    families.push({
      name: "stowage_repository_last_snapshot_timestamp_seconds",
      help: "Modification time of the newest snapshot per repository, in seconds since the epoch",
      type: "gauge",
      samples: perRepo(options.lastSnapshot, (s) => [s.repo, s.seconds], Math.max),
    });
    if (options.quota) {
      families.push({
        name: "stowage_quota_limit_bytes",
        help: "Configured quota in bytes",
        type: "gauge",
        samples: [{ labels: [], value: options.quota.limit }],
      });
      families.push({
        name: "stowage_quota_usage_bytes",
        help: "Bytes counted against the quota",
        type: "gauge",
        samples: [{ labels: [], value: options.quota.usage() }],
      });
    }
    if (options.scopedQuotas) {
      let scoped: { scope: string; name: string; used: number; limit: number }[] = [];
      try {
        scoped = [...options.scopedQuotas()];
      } catch {
        // a failing source must not break the scrape
      }
      const labelsOf = (q: { scope: string; name: string }): [string, string][] => [
        ["name", q.name],
        ["scope", q.scope],
      ];
      families.push({
        name: "stowage_quota_scope_limit_bytes",
        help: "Configured quota per scope (repo, user, grant) in bytes",
        type: "gauge",
        samples: scoped.map((q) => ({ labels: labelsOf(q), value: q.limit })),
      });
      families.push({
        name: "stowage_quota_scope_usage_bytes",
        help: "Bytes counted against the quota per scope (repo, user, grant)",
        type: "gauge",
        samples: scoped.map((q) => ({ labels: labelsOf(q), value: q.used })),
      });
    }
    if (options.processMetrics ?? true) {
      const fds = openFds();
      if (fds !== null) {
        families.push({
          name: "stowage_open_fds",
          help: "Number of open file descriptors",
          type: "gauge",
          samples: [{ labels: [], value: fds }],
        });
      }
      families.push({
        name: "stowage_process_resident_memory_bytes",
        help: "Resident memory size in bytes",
        type: "gauge",
        samples: [{ labels: [], value: Deno.memoryUsage().rss }],
      });
      families.push({
        name: "stowage_process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds",
        type: "gauge",
        samples: [{ labels: [], value: Math.floor(performance.timeOrigin) / 1000 }],
      });
    }
    return families.sort((a, b) => compare(a.name, b.name));
  }

  /** The whole exposition (text format 0.0.4); families without samples are left out. */
  render(): string {
    return this.#families().map(renderFamily).join("");
  }
}

export interface MetricsAccessOptions {
  /** The repository authentication: user name ("" without auth) or null when it fails. */
  authenticate: (request: Request) => Promise<string | null>;
  /** --prometheus-no-auth */
  noAuth: boolean;
  /** --private-repos */
  privateRepos: boolean;
  /** False under --no-auth (the user is then ""). */
  authEnabled: boolean;
}

/** True when Accept-Encoding allows gzip (an explicit q=0 refuses it, "*" allows it). */
export function acceptsGzip(header: string | null): boolean {
  if (header === null) return false;
  let gzip: number | null = null;
  let star: number | null = null;
  for (const part of header.split(",")) {
    const [rawName, ...params] = part.split(";");
    const name = rawName.trim().toLowerCase();
    let q = 1;
    for (const param of params) {
      const match = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(param);
      if (match) q = Number(match[1]);
    }
    if (Number.isNaN(q)) q = 0;
    if (name === "gzip" || name === "x-gzip") gzip = Math.max(gzip ?? 0, q);
    else if (name === "*") star = q;
  }
  return (gzip ?? star ?? 0) > 0;
}

async function gzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const encoder = new TextEncoder();

/** The /metrics handler: any method; 401 `Unauthorized` as rest-server when access is refused. */
export function metricsHandler(
  registry: MetricsRegistry,
  options: MetricsAccessOptions,
): (request: Request) => Promise<Response> {
  return async (request) => {
    if (!options.noAuth) {
      const user = options.authEnabled ? await options.authenticate(request) : "";
      if (user === null) return resticError(401, request.method);
      if (options.privateRepos && user !== "metrics") return resticError(401, request.method);
    }
    let body: Uint8Array<ArrayBuffer> = encoder.encode(registry.render());
    const headers = new Headers({ "content-type": METRICS_CONTENT_TYPE, vary: "Accept-Encoding" });
    if (acceptsGzip(request.headers.get("accept-encoding"))) {
      body = await gzip(body);
      headers.set("content-encoding", "gzip");
    }
    headers.set("content-length", String(body.byteLength));
    return new Response(request.method === "HEAD" ? null : body, { status: 200, headers });
  };
}
