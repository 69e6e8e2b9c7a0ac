// `stowage status`: the repositories below the data directory (restic repositories and borg
// stores, depth ≤ 2) with protocol, size, object count and newest backup, plus quota use
// (limits from the config file; usage from the server's state file when it matches the config,
// otherwise from this scan). `--json` for machines, `--max-age 2d` exits 1 naming every
// repository whose newest backup is older (or that has none), for cron. `--rescan` writes the
// fresh figures into a clean state file so the next start uses them (a state file marked
// unclean, by a running or crashed server, is left alone: the next start rescans anyway).

import { fsErrorReason } from "../errors.ts";
import { type FlagSpec, parseFlags, renderHelp, UsageError } from "./flags.ts";
import {
  configHasQuotas,
  configPathFrom,
  type Env,
  loadConfigFile,
  mergeServeSettings,
} from "./config_file.ts";
import { formatAge, formatBytes, parseDuration } from "./units.ts";
import {
  QuotaScopes,
  readUsageState,
  STATE_FILE_NAME,
  type UsageSnapshot,
  type UsageState,
} from "../policy/quota_scopes.ts";
import { type RepoInfo, scanRepositories } from "../policy/repo_scan.ts";

export const STATUS_FLAGS: FlagSpec[] = [
  { name: "path", type: "string", value: "DIR", help: "data directory" },
  { name: "config", type: "string", value: "FILE", help: "config file (path, quotas, grants)" },
  { name: "json", type: "boolean", help: "print JSON instead of a table" },
  {
    name: "max-age",
    type: "string",
    value: "DURATION",
    help: "exit 1 when a repository's newest backup is older (e.g. 2d, 36h)",
  },
  {
    name: "rescan",
    type: "boolean",
    help: "store the measured usage in the state file for the next start",
  },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
];

const USAGE = "stowage status [--path DIR | --config FILE] [--json] [--max-age DURATION]";
const SUMMARY = "Shows repositories, sizes, newest backups and quota use; checks backup age.";

export interface StatusIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Env;
  now: () => number;
}

export interface QuotaReport {
  /** "state": the server's state file; "scan": measured now. */
  source: "state" | "scan";
  savedAt?: string;
  clean?: boolean;
  usage: UsageSnapshot;
}

export interface StatusReport {
  path: string;
  generatedAt: string;
  repositories: {
    repo: string;
    protocol: string;
    bytes: number;
    objects: number;
    newestBackup: string | null;
    newestBackupAgeSeconds: number | null;
    quota?: { used: number; limit: number };
  }[];
  quotas: QuotaReport | null;
  maxAgeSeconds?: number;
  stale: string[];
}

/** Overrides the measured usage with the state file's figures (same scopes only). */
function fromState(usage: UsageSnapshot, state: UsageState): UsageSnapshot {
  const pick = (section: UsageSnapshot["user"], stored: Record<string, number>) => {
    const out: UsageSnapshot["user"] = {};
    for (const [id, scope] of Object.entries(section)) {
      out[id] = { ...scope, used: stored[id] ?? scope.used, reserved: 0 };
    }
    return out;
  };
  const merged: UsageSnapshot = {
    repo: pick(usage.repo, state.repo),
    user: pick(usage.user, state.user),
    grant: pick(usage.grant, state.grant),
  };
  if (usage.global) merged.global = { ...usage.global, used: state.global ?? usage.global.used };
  return merged;
}

function repoLabel(key: string): string {
  return key === "" ? "/" : key;
}

function renderTable(report: StatusReport, now: number): string {
  const rows = [["REPOSITORY", "PROTOCOL", "SIZE", "OBJECTS", "NEWEST BACKUP", "QUOTA"]];
  for (const r of report.repositories) {
    const newest = r.newestBackup === null
      ? "never"
      : `${r.newestBackup.slice(0, 16).replace("T", " ")}Z (${
        formatAge(now - Date.parse(r.newestBackup))
      } ago)`;
    const quota = r.quota
      ? `${formatBytes(r.quota.used)} / ${formatBytes(r.quota.limit)} (${
        Math.floor((r.quota.used / r.quota.limit) * 100)
      }%)`
      : "";
    rows.push([
      repoLabel(r.repo),
      r.protocol,
      formatBytes(r.bytes),
      String(r.objects),
      newest,
      quota,
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const lines = report.repositories.length === 0
    ? [`(no repositories below ${report.path})`]
    : rows.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd());
  const q = report.quotas;
  if (q !== null) {
    const source = q.source === "state"
      ? `state file saved ${q.savedAt}${
        q.clean ? ", clean shutdown" : ", server running or crashed"
      }`
      : "measured now";
    lines.push("", `Quotas (usage: ${source}):`);
    const line = (label: string, s: { used: number; limit: number }) =>
      lines.push(
        `  ${label}: ${formatBytes(s.used)} / ${formatBytes(s.limit)} (${
          Math.floor((s.used / s.limit) * 100)
        }%)`,
      );
    if (q.usage.global) line("global (--max-size)", q.usage.global);
    for (const [user, s] of Object.entries(q.usage.user)) line(`user ${user}`, s);
    for (const [id, s] of Object.entries(q.usage.grant)) line(`grant ${id}`, s);
  }
  return lines.join("\n") + "\n";
}

/** A failure that is not a usage error: exit status 1. */
class StatusError extends Error {}

interface Resolved {
  root: string;
  repos: RepoInfo[];
  scopes: QuotaScopes | null;
}

/** The data directory and its repositories, and the quota scopes when any are configured. */
async function scan(values: Record<string, unknown>, env: Env): Promise<Resolved> {
  const configPath = configPathFrom(values as Record<string, string>, env);
  const file = configPath === null ? null : await loadConfigFile(configPath);
  const merged = mergeServeSettings({ path: values.path as string | undefined }, file, env);
  const path = merged.path;
  if (typeof path !== "string" || path === "") {
    throw new UsageError("which data directory? use --path DIR or --config FILE");
  }
  const root = path.length > 1 ? path.replace(/\/+$/, "") : path;
  let info: Deno.FileInfo | null = null;
  try {
    info = await Deno.stat(root);
  } catch (error) {
    const reason = fsErrorReason(error);
    throw new StatusError(`cannot read ${root}: ${reason}`);
  }
  if (!info.isDirectory) throw new StatusError(`cannot read ${root}: not a directory`);
  const scanned = await scanRepositories(root);
  const maxSize = typeof merged["max-size"] === "number" ? merged["max-size"] : 0;
  const hasQuotas = file !== null && configHasQuotas(file);
  if (!hasQuotas && maxSize <= 0) return { root, scopes: null, repos: scanned };
  const scopes = await QuotaScopes.open({
    root,
    grants: file?.grants ?? null,
    quotas: file?.quotas ?? { repos: {}, users: {} },
    privateRepos: merged["private-repos"] === true,
    maxSize,
    scanned,
    markRunning: false,
  });
  return { root, scopes, repos: scanned };
}

async function run(argv: string[], io: StatusIo): Promise<number> {
  const { values, positionals } = parseFlags(STATUS_FLAGS, argv);
  if (values.help) {
    io.out(renderHelp(USAGE, SUMMARY, STATUS_FLAGS));
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  let maxAgeMs: number | null = null;
  if (values["max-age"] !== undefined) {
    maxAgeMs = parseDuration(values["max-age"] as string);
    if (maxAgeMs === null) {
      throw new UsageError(`invalid --max-age "${values["max-age"]}": expected e.g. 2d, 36h, 90m`);
    }
  }
  const { root, scopes, repos } = await scan(values, io.env);
  const now = io.now();
  let quotas: QuotaReport | null = null;
  const notes: string[] = [];
  if (scopes !== null) {
    const state = await readUsageState(scopes.stateFile);
    const usage = scopes.usageSnapshot();
    if (values.rescan) {
      if (state === null || state.clean) {
        await scopes.save(true);
        notes.push(`wrote the measured usage to ${scopes.stateFile}`);
      } else {
        notes.push(`${scopes.stateFile} is marked unclean: the next start measures anyway`);
      }
      quotas = { source: "scan", usage };
    } else if (state !== null && state.fingerprint === scopes.fingerprint) {
      quotas = {
        source: "state",
        savedAt: state.savedAt,
        clean: state.clean,
        usage: fromState(usage, state),
      };
    } else {
      quotas = { source: "scan", usage };
    }
  } else if (values.rescan) {
    notes.push(`no quotas configured: nothing to write to ${root}/${STATE_FILE_NAME}`);
  }
  const report: StatusReport = {
    path: root,
    generatedAt: new Date(now).toISOString(),
    repositories: repos.map((r) => {
      const entry: StatusReport["repositories"][number] = {
        repo: r.key,
        protocol: r.protocol,
        bytes: r.bytes,
        objects: r.objects,
        newestBackup: r.newestBackup === null ? null : new Date(r.newestBackup).toISOString(),
        newestBackupAgeSeconds: r.newestBackup === null
          ? null
          : Math.max(0, Math.floor((now - r.newestBackup) / 1000)),
      };
      const repoQuota = quotas?.usage.repo[r.key];
      if (repoQuota) entry.quota = { used: repoQuota.used, limit: repoQuota.limit };
      return entry;
    }),
    quotas,
    stale: [],
  };
  if (maxAgeMs !== null) {
    report.maxAgeSeconds = Math.floor(maxAgeMs / 1000);
    report.stale = repos
      .filter((r) => r.newestBackup === null || now - r.newestBackup > maxAgeMs!)
      .map((r) => repoLabel(r.key));
  }
  io.out(values.json ? JSON.stringify(report, null, 2) + "\n" : renderTable(report, now));
  for (const note of notes) io.err(`${note}\n`);
  if (report.stale.length > 0) {
    io.err(
      `stowage: no backup newer than ${values["max-age"]} in: ${report.stale.join(", ")}\n`,
    );
    return 1;
  }
  return 0;
}

function writeAll(writer: { writeSync(p: Uint8Array): number }, text: string): void {
  const data = new TextEncoder().encode(text);
  let at = 0;
  while (at < data.byteLength) at += writer.writeSync(data.subarray(at));
}

/** `stowage status …`; returns the exit status (0 ok, 1 stale backups or failure, 2 usage). */
export async function runStatusCommand(
  argv: string[],
  io: Partial<StatusIo> = {},
): Promise<number> {
  const full: StatusIo = {
    out: io.out ?? ((text) => writeAll(Deno.stdout, text)),
    err: io.err ?? ((text) => writeAll(Deno.stderr, text)),
    env: io.env ?? Deno.env,
    now: io.now ?? Date.now,
  };
  try {
    return await run(argv, full);
  } catch (error) {
    full.err(`stowage: ${(error as Error).message}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}
