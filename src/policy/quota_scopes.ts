// Quota scopes beyond --max-size, and their persisted usage. A scope is a set of repositories
// with a byte limit; every write into a repository counts against every scope containing it,
// whoever writes (quotas limit storage, not people):
//   - repo  (quotas.repos: pattern → limit): each matching repository on its own; the most
//     specific pattern decides the limit;
//   - user  (quotas.users: user → limit): all repositories the user may write to together
//     (the user's grants whose mode allows writing; with --private-repos and no grants,
//     `<user>` and `<user>/*`; without a grants section, every repository);
//   - grant (a grant's `quota`): all repositories its pattern matches together.
// Usage is measured by walking the repositories at start, or taken from the state file
// (`<path>/.stowage-usage.json`, 0600, written atomically) when it was written at a clean
// shutdown for the same scope definitions. While running the file is marked unclean, so a crash
// means a rescan at the next start. Changes made behind the server's back while it is stopped
// are only seen by a rescan (`stowage status --rescan`, or deleting the file).

import {
  type Grants,
  mapAllowsWrite,
  matchPattern,
  modePermissions,
  mostSpecific,
  parsePattern,
  type Pattern,
  privateGrants,
} from "./grants.ts";
import { measureTree, QuotaTracker } from "./quota.ts";
import { startTicker, type Ticker } from "../ticker.ts";
import { type RepoInfo, scanRepositories } from "./repo_scan.ts";

export const STATE_FILE_NAME = ".stowage-usage.json";
const STATE_VERSION = 1;

/** Quota limits from the config file (bytes). */
export interface QuotaSettings {
  /** Repository pattern → limit for each matching repository. */
  repos: Record<string, number>;
  /** User → limit for all repositories the user may write to, together. */
  users: Record<string, number>;
}

export interface ScopeUsage {
  used: number;
  reserved: number;
  limit: number;
}

export interface UsageSnapshot {
  global?: ScopeUsage;
  repo: Record<string, ScopeUsage>;
  user: Record<string, ScopeUsage>;
  /** Keyed `<user>:<pattern>`. */
  grant: Record<string, ScopeUsage>;
}

/** The state file's content. */
export interface UsageState {
  version: number;
  clean: boolean;
  savedAt: string;
  fingerprint: string;
  global?: number;
  repo: Record<string, number>;
  user: Record<string, number>;
  grant: Record<string, number>;
}

export interface QuotaScopesOptions {
  /** The data directory. */
  root: string;
  grants: Grants | null;
  quotas: QuotaSettings;
  privateRepos: boolean;
  /** --max-size; > 0 adds the global tracker (`global`). */
  maxSize?: number;
  /** Default `<root>/.stowage-usage.json`. */
  stateFile?: string;
  /** Ignore the state file and measure. */
  rescan?: boolean;
  /** Repositories already scanned (stowage status), instead of scanning again. */
  scanned?: RepoInfo[];
  /** Server mode (default true): mark the state file unclean while running. */
  markRunning?: boolean;
  log?: (line: string) => void;
}

/** A set of repositories with one tracker (user and grant scopes). */
interface SetScope {
  id: string;
  patterns: Pattern[];
  tracker: QuotaTracker;
}

interface RepoRule {
  pattern: Pattern;
  limit: number;
}

/** Reads the state file; null when missing or unreadable as a state. */
export async function readUsageState(file: string): Promise<UsageState | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(file));
  } catch {
    return null;
  }
  const state = parsed as UsageState;
  if (typeof state !== "object" || state === null || state.version !== STATE_VERSION) return null;
  for (const section of ["repo", "user", "grant"] as const) {
    if (typeof state[section] !== "object" || state[section] === null) return null;
  }
  return state;
}

/** Writes the state atomically: temp file (0600) + fsync + rename + directory fsync. */
export async function writeUsageState(file: string, state: UsageState): Promise<void> {
  const slash = file.lastIndexOf("/");
  const dir = slash < 0 ? "." : file.slice(0, slash) || "/";
  const temp = `${file}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const data = new TextEncoder().encode(JSON.stringify(state, null, 2) + "\n");
  const handle = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  try {
    let at = 0;
    while (at < data.byteLength) at += await handle.write(data.subarray(at));
    await handle.sync();
  } catch (error) {
    handle.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  handle.close();
  await Deno.chmod(temp, 0o600).catch(() => {});
  await Deno.rename(temp, file);
  try {
    const dirHandle = await Deno.open(dir, { read: true });
    await dirHandle.sync().catch(() => {});
    dirHandle.close();
  } catch {
    // directory fsync is best effort
  }
}

/** The scopes that apply and their trackers; see the header comment for the semantics. */
export class QuotaScopes {
  readonly stateFile: string;
  /** The --max-size tracker, when maxSize > 0 (replaces the server's own measurement). */
  readonly global: QuotaTracker | null;
  /** Where the initial usage came from. */
  readonly source: "state" | "scan";
  readonly #rules: RepoRule[];
  readonly #sets: { user: SetScope[]; grant: SetScope[] };
  readonly #repoTrackers = new Map<string, QuotaTracker>();
  readonly #repoInitial: Map<string, number>;
  readonly #listCache = new Map<string, QuotaTracker[]>();
  readonly #fingerprint: string;
  #ticker: Ticker | undefined;
  #saving: Promise<void> = Promise.resolve();

  private constructor(init: {
    stateFile: string;
    global: QuotaTracker | null;
    source: "state" | "scan";
    rules: RepoRule[];
    sets: { user: SetScope[]; grant: SetScope[] };
    repoInitial: Map<string, number>;
    fingerprint: string;
  }) {
    this.stateFile = init.stateFile;
    this.global = init.global;
    this.source = init.source;
    this.#rules = init.rules;
    this.#sets = init.sets;
    this.#repoInitial = init.repoInitial;
    this.#fingerprint = init.fingerprint;
  }

  /** Builds the scopes, taking usage from a clean state file or measuring it. */
  static async open(options: QuotaScopesOptions): Promise<QuotaScopes> {
    const log = options.log ?? (() => {});
    const stateFile = options.stateFile ?? `${options.root}/${STATE_FILE_NAME}`;
    const maxSize = options.maxSize ?? 0;
    const rules: RepoRule[] = Object.entries(options.quotas.repos).map(([text, limit]) => ({
      pattern: parsePattern(text),
      limit,
    }));
    const definitions = scopeDefinitions(options);
    const fingerprint = JSON.stringify({
      v: STATE_VERSION,
      global: maxSize > 0,
      repos: rules.map((r) => r.pattern.text).sort(),
      user: definitions.user.map((d) => [d.id, d.patterns.map((p) => p.text).sort()]),
      grant: definitions.grant.map((d) => d.id),
    });
    const state = options.rescan || options.scanned ? null : await readUsageState(stateFile);
    const usable = state !== null && state.clean && state.fingerprint === fingerprint &&
      (maxSize <= 0 || typeof state.global === "number");
    let global = 0;
    const repoInitial = new Map<string, number>();
    const setUsage = { user: new Map<string, number>(), grant: new Map<string, number>() };
    if (usable) {
      global = state.global ?? 0;
      for (const [key, bytes] of Object.entries(state.repo)) repoInitial.set(key, bytes);
      for (const kind of ["user", "grant"] as const) {
        for (const [id, bytes] of Object.entries(state[kind])) setUsage[kind].set(id, bytes);
      }
      log(`Quota usage loaded from ${stateFile} (clean shutdown at ${state.savedAt})`);
    } else {
      if (options.scanned === undefined) log("Measuring quota usage (can take a while)...");
      const repos = options.scanned ?? await scanRepositories(options.root);
      if (maxSize > 0) global = await measureTree(options.root);
      for (const repo of repos) {
        if (mostSpecific(rules, repo.segments) !== null) repoInitial.set(repo.key, repo.bytes);
        for (const kind of ["user", "grant"] as const) {
          for (const def of definitions[kind]) {
            if (def.patterns.some((p) => matchPattern(p, repo.segments))) {
              setUsage[kind].set(def.id, (setUsage[kind].get(def.id) ?? 0) + repo.bytes);
            }
          }
        }
      }
      if (options.scanned === undefined) log(`Quota usage measured (${repos.length} repositories)`);
    }
    const sets = { user: [] as SetScope[], grant: [] as SetScope[] };
    for (const kind of ["user", "grant"] as const) {
      for (const def of definitions[kind]) {
        sets[kind].push({
          id: def.id,
          patterns: def.patterns,
          tracker: new QuotaTracker(def.limit, setUsage[kind].get(def.id) ?? 0),
        });
      }
    }
    const scopes = new QuotaScopes({
      stateFile,
      global: maxSize > 0 ? new QuotaTracker(maxSize, global) : null,
      source: usable ? "state" : "scan",
      rules,
      sets,
      repoInitial,
      fingerprint,
    });
    if (options.markRunning ?? true) {
      await scopes.save(false).catch((error) =>
        log(`cannot write ${stateFile}: ${(error as Error).message}`)
      );
    }
    return scopes;
  }

  /** Identifies the scope definitions; a state file with another one is not used. */
  get fingerprint(): string {
    return this.#fingerprint;
  }

  /** The trackers a write into `repo` counts against (global excluded), tightest first. */
  trackersFor(repo: readonly string[]): QuotaTracker[] {
    const key = repo.join("/");
    const cached = this.#listCache.get(key);
    if (cached !== undefined) return cached;
    const list: QuotaTracker[] = [];
    const rule = mostSpecific(this.#rules, repo);
    if (rule !== null) {
      let tracker = this.#repoTrackers.get(key);
      if (tracker === undefined) {
        tracker = new QuotaTracker(rule.limit, this.#repoInitial.get(key) ?? 0);
        this.#repoTrackers.set(key, tracker);
      }
      list.push(tracker);
    }
    for (const scope of [...this.#sets.user, ...this.#sets.grant]) {
      if (scope.patterns.some((p) => matchPattern(p, repo))) list.push(scope.tracker);
    }
    list.sort((a, b) => a.limit - b.limit);
    if (this.#listCache.size > 10_000) this.#listCache.clear();
    this.#listCache.set(key, list);
    return list;
  }

  /** Usage per scope, for /metrics and `stowage status`. */
  usageSnapshot(): UsageSnapshot {
    const view = (t: QuotaTracker): ScopeUsage => ({
      used: t.usage(),
      reserved: t.reserved(),
      limit: t.limit,
    });
    const repo: Record<string, ScopeUsage> = {};
    for (const [key, bytes] of this.#repoInitial) {
      const rule = mostSpecific(this.#rules, key === "" ? [] : key.split("/"));
      if (rule !== null) repo[key] = { used: bytes, reserved: 0, limit: rule.limit };
    }
    for (const [key, tracker] of this.#repoTrackers) repo[key] = view(tracker);
    const snapshot: UsageSnapshot = {
      repo: sortKeys(repo),
      user: Object.fromEntries(this.#sets.user.map((s) => [s.id, view(s.tracker)])),
      grant: Object.fromEntries(this.#sets.grant.map((s) => [s.id, view(s.tracker)])),
    };
    if (this.global !== null) snapshot.global = view(this.global);
    return snapshot;
  }

  /** The state as it would be written now. */
  state(clean: boolean): UsageState {
    const snapshot = this.usageSnapshot();
    const used = (section: Record<string, ScopeUsage>) =>
      Object.fromEntries(Object.entries(section).map(([k, v]) => [k, v.used]));
    const state: UsageState = {
      version: STATE_VERSION,
      clean,
      savedAt: new Date().toISOString(),
      fingerprint: this.#fingerprint,
      repo: used(snapshot.repo),
      user: used(snapshot.user),
      grant: used(snapshot.grant),
    };
    if (snapshot.global) state.global = snapshot.global.used;
    return state;
  }

  /** Writes the state file (saves never overlap). */
  save(clean: boolean): Promise<void> {
    const next = this.#saving.catch(() => {}).then(() =>
      writeUsageState(this.stateFile, this.state(clean))
    );
    this.#saving = next;
    return next;
  }

  /** Saves (unclean) every `intervalMs` in the background, so status sees recent figures. */
  startPeriodicSave(intervalMs = 60_000, log: (line: string) => void = () => {}): void {
    if (this.#ticker !== undefined) return;
    this.#ticker = startTicker(intervalMs, () => {
      this.save(false).catch((error) => log(`cannot write ${this.stateFile}: ${error.message}`));
    });
  }

  /** At clean shutdown (after the last request): stops saving and writes the clean state. */
  async close(): Promise<void> {
    this.#ticker?.stop();
    this.#ticker = undefined;
    await this.save(true);
  }
}

interface SetDefinition {
  id: string;
  patterns: Pattern[];
  limit: number;
}

/** The user and grant scopes the options define. */
function scopeDefinitions(
  options: QuotaScopesOptions,
): { user: SetDefinition[]; grant: SetDefinition[] } {
  const user: SetDefinition[] = [];
  for (const [name, limit] of Object.entries(options.quotas.users).sort(byKey)) {
    const own = options.grants?.[name];
    let texts: string[];
    if (own !== undefined) {
      texts = own.filter((g) =>
        mapAllowsWrite(modePermissions(g.mode, "restic")) ||
        mapAllowsWrite(modePermissions(g.mode, "borg"))
      ).map((g) => g.pattern);
    } else if (options.privateRepos) {
      texts = privateGrants(name).map((g) => g.pattern);
    } else {
      texts = options.grants === null ? ["*"] : [];
    }
    user.push({ id: name, patterns: texts.map(parsePattern), limit });
  }
  const grant: SetDefinition[] = [];
  for (const [name, list] of Object.entries(options.grants ?? {}).sort(byKey)) {
    for (const g of list) {
      if (g.quota !== undefined) {
        grant.push({
          id: `${name}:${g.pattern}`,
          patterns: [parsePattern(g.pattern)],
          limit: g.quota,
        });
      }
    }
  }
  return { user, grant };
}

function byKey<T>(a: [string, T], b: [string, T]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(byKey));
}
