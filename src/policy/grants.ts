// Grants: per user, repository path patterns with a mode (or an explicit lrwWD map per
// protocol) and an optional quota, turned into an AccessPolicy. Owns the pattern syntax and
// matching (`*` alone = every repository; otherwise literal segments or `*` for exactly one
// segment, at most 2 segments), the "most specific grant wins" rule, the restic meaning of each
// mode name (borg uses BORG_MODES verbatim), and how --append-only / --private-repos combine.

import { type AccessPolicy, APPEND_ONLY, type Protocol } from "./access.ts";
import { BORG_MODES, PERMISSION_LETTERS, type PermissionMap, RESTIC_MODES } from "./permissions.ts";

export { RESTIC_MODES };
import type { QuotaTracker } from "./quota.ts";
import { unsafeKeyReason } from "../storage/keys.ts";

export const MODE_NAMES = ["all", "append-only", "read-only", "write-only", "no-delete"] as const;
export type ModeName = typeof MODE_NAMES[number];

/** Prefix → letters, as in a `--permissions` JSON map. */
export type LettersMap = Record<string, string>;
/** A mode for both protocols, or one per protocol (a protocol left out is denied). */
export type GrantMode = ModeName | LettersMap | {
  restic?: ModeName | LettersMap;
  borg?: ModeName | LettersMap;
};

export interface Grant {
  // `*`, `name`, `a/b`, `a/*` or `*/b` (validated by parsePattern).
  pattern: string;
  mode: GrantMode;
  /** Bytes: total size of all repositories this pattern matches. */
  quota?: number;
}

/** Grants by user name. */
export type Grants = Record<string, Grant[]>;

/** borg's meaning: borg's own modes; append-only is borg's no-delete. */
const BORG_MODE_MAPS: Readonly<Record<ModeName, PermissionMap>> = {
  "all": BORG_MODES["all"],
  "append-only": BORG_MODES["no-delete"],
  "no-delete": BORG_MODES["no-delete"],
  "write-only": BORG_MODES["write-only"],
  "read-only": BORG_MODES["read-only"],
};

const MODE_MAPS: Record<Protocol, Readonly<Record<ModeName, PermissionMap>>> = {
  restic: RESTIC_MODES as Readonly<Record<ModeName, PermissionMap>>,
  borg: BORG_MODE_MAPS,
};

export function isModeName(value: unknown): value is ModeName {
  return typeof value === "string" && (MODE_NAMES as readonly string[]).includes(value);
}

/** True for `{restic?: …, borg?: …}` (an object whose keys are only protocol names). */
export function isPerProtocol(
  mode: unknown,
): mode is { restic?: ModeName | LettersMap; borg?: ModeName | LettersMap } {
  if (typeof mode !== "object" || mode === null || Array.isArray(mode)) return false;
  const keys = Object.keys(mode);
  return keys.length > 0 && keys.every((k) => k === "restic" || k === "borg");
}

/** The permission map of a mode for one protocol; undefined when the protocol is denied. */
export function modePermissions(mode: GrantMode, protocol: Protocol): PermissionMap | undefined {
  const single = isPerProtocol(mode) ? mode[protocol] : mode;
  if (single === undefined) return undefined;
  if (typeof single === "string") return MODE_MAPS[protocol][single];
  // An empty map would allow everything (isPermitted); config validation refuses it anyway.
  return Object.keys(single).length === 0 ? { "": "" } : { ...single };
}

/** Letters of `map` that decide for `name` ("" when nothing decides); null map = all letters. */
function lettersFor(map: PermissionMap, name: string): string {
  if (map === null) return PERMISSION_LETTERS;
  let candidate = name;
  while (true) {
    if (Object.hasOwn(map, candidate)) return map[candidate];
    if (candidate === "") return "";
    const slash = candidate.lastIndexOf("/");
    candidate = slash < 0 ? "" : candidate.slice(0, slash);
  }
}

/** The map that allows, for every key, exactly what both maps allow. */
export function intersectMaps(a: PermissionMap, b: PermissionMap): PermissionMap {
  if (a === null) return b === null ? null : { ...b };
  if (b === null) return { ...a };
  const out: Record<string, string> = { "": "" };
  for (const prefix of new Set(["", ...Object.keys(a), ...Object.keys(b)])) {
    const left = lettersFor(a, prefix);
    const right = lettersFor(b, prefix);
    out[prefix] = [...PERMISSION_LETTERS].filter((l) => left.includes(l) && right.includes(l))
      .join("");
  }
  return out;
}

/** True when the map allows writing anything (w or W on some prefix). */
export function mapAllowsWrite(map: PermissionMap | undefined): boolean {
  if (map === undefined) return false;
  if (map === null) return true;
  return Object.entries(map).some(([prefix, letters]) =>
    prefix !== "locks" && /[wW]/.test(letters)
  );
}

/** A parsed pattern: `null` segments for `*` alone (every repository). */
export interface Pattern {
  text: string;
  /** null = the lone `*`; otherwise literal segments or "*" for exactly one segment. */
  segments: string[] | null;
  wildcards: number;
}

/** Parses and validates a pattern; throws an Error whose message says what is wrong. */
export function parsePattern(text: string): Pattern {
  if (text === "*") return { text, segments: null, wildcards: Infinity };
  if (text === "") throw new Error("empty pattern");
  const segments = text.split("/");
  for (const segment of segments) {
    if (segment === "") throw new Error(`empty segment in "${text}"`);
    if (segment === "." || segment === "..") throw new Error(`"${segment}" segment in "${text}"`);
  }
  if (segments.length > 2) throw new Error(`more than 2 segments in "${text}"`);
  for (const segment of segments) {
    if (segment !== "*" && segment.includes("*")) {
      throw new Error(`"*" must be a whole segment in "${text}"`);
    }
    const reason = segment === "*" ? null : unsafeKeyReason(segment);
    if (reason !== null) throw new Error(`${reason} in "${text}"`);
  }
  return { text, segments, wildcards: segments.filter((s) => s === "*").length };
}

/** True when the pattern matches the repository at `repo` (path segments). */
export function matchPattern(pattern: Pattern, repo: readonly string[]): boolean {
  if (pattern.segments === null) return true;
  if (pattern.segments.length !== repo.length) return false;
  return pattern.segments.every((s, i) => s === "*" || s === repo[i]);
}

/** Negative when `a` is more specific: fewer wildcards first, then more segments. */
export function compareSpecificity(a: Pattern, b: Pattern): number {
  if (a.wildcards !== b.wildcards) return a.wildcards < b.wildcards ? -1 : 1;
  return (b.segments?.length ?? 0) - (a.segments?.length ?? 0);
}

// True when two different patterns of equal specificity can match the same repository, so
// neither would win (e.g. `alice/*` and `*/laptop`); config validation refuses such pairs.
export function ambiguous(a: Pattern, b: Pattern): boolean {
  if (a.text === b.text || compareSpecificity(a, b) !== 0) return false;
  if (a.segments === null || b.segments === null) return false;
  if (a.segments.length !== b.segments.length) return false;
  return a.segments.every((s, i) => s === "*" || b.segments![i] === "*" || s === b.segments![i]);
}

/** The most specific item whose pattern matches `repo`, or null. */
export function mostSpecific<T extends { pattern: Pattern }>(
  items: readonly T[],
  repo: readonly string[],
): T | null {
  let best: T | null = null;
  for (const item of items) {
    if (!matchPattern(item.pattern, repo)) continue;
    if (best === null || compareSpecificity(item.pattern, best.pattern) < 0) best = item;
  }
  return best;
}

/** A grant with its pattern parsed and its maps computed per protocol. */
export interface CompiledGrant {
  user: string;
  index: number;
  pattern: Pattern;
  permissions: Record<Protocol, PermissionMap | undefined>;
  quota?: number;
}

/** The grants --private-repos gives a user without grants: `<user>` and `<user>/*`, mode all. */
export function privateGrants(user: string): Grant[] {
  return [{ pattern: user, mode: "all" }, { pattern: `${user}/*`, mode: "all" }];
}

/** Compiles one user's grants (patterns must already be valid). */
export function compileGrants(user: string, grants: readonly Grant[]): CompiledGrant[] {
  return grants.map((grant, index) => ({
    user,
    index,
    pattern: parsePattern(grant.pattern),
    permissions: {
      restic: modePermissions(grant.mode, "restic"),
      borg: modePermissions(grant.mode, "borg"),
    },
    quota: grant.quota,
  }));
}

export interface GrantPolicyOptions {
  /** --append-only: every grant is capped at append-only. */
  appendOnly: boolean;
  /** --private-repos: users without any grant get `<user>` and `<user>/*` with mode all. */
  privateRepos: boolean;
  /** False under --no-auth; --private-repos then has no effect (as in flagPolicy). */
  authEnabled: boolean;
  /** The quota trackers that apply to a repository (QuotaScopes), if quotas are configured. */
  quotas?: { trackersFor(repo: readonly string[]): QuotaTracker[] };
}

/**
 * The grant policy. `grants` null means "no grants section": everyone may use every
 * repository (or only their own with --private-repos), exactly as flagPolicy, plus quotas.
 */
export function grantPolicy(grants: Grants | null, options: GrantPolicyOptions): AccessPolicy {
  const compiled = new Map<string, CompiledGrant[]>();
  for (const [user, list] of Object.entries(grants ?? {})) {
    compiled.set(user, compileGrants(user, list));
  }
  const implicit = new Map<string, CompiledGrant[]>();
  const everything = compileGrants("", [{ pattern: "*", mode: "all" }]);
  const grantsOf = (user: string): CompiledGrant[] | null => {
    const own = compiled.get(user);
    if (own !== undefined) return own;
    if (options.privateRepos && options.authEnabled) {
      let list = implicit.get(user);
      if (list === undefined) {
        if (implicit.size > 10_000) implicit.clear();
        list = compileGrants(user, privateGrants(user));
        implicit.set(user, list);
      }
      return list;
    }
    return grants === null ? everything : null;
  };
  return {
    resolve(user, repo, protocol) {
      const list = grantsOf(user);
      if (list === null) return null;
      const grant = mostSpecific(list, repo);
      if (grant === null) return null;
      let permissions = grant.permissions[protocol];
      if (permissions === undefined) return null;
      if (options.appendOnly) permissions = intersectMaps(permissions, APPEND_ONLY[protocol]);
      const quotas = options.quotas?.trackersFor(repo);
      return quotas && quotas.length > 0 ? { permissions, quotas } : { permissions };
    },
  };
}

/**
 * The depth of borg store paths (`/<store>/` = 1, `/<user>/<store>/` = 2) for the borg router:
 * 2 with --private-repos or when a grant pattern has two segments, else 1. Stores at the
 * other depth are not reachable over borgstore REST (restic repositories are, at both depths).
 */
export function borgStoreDepth(grants: Grants | null, privateRepos: boolean): 1 | 2 {
  if (privateRepos) return 2;
  for (const list of Object.values(grants ?? {})) {
    for (const grant of list) if (grant.pattern.split("/").length === 2) return 2;
  }
  return 1;
}
