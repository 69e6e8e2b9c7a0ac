// The `--config FILE` of `stowage serve` and `stowage check-config FILE`. The file is JSON (the
// runtime parses it without an extra dependency): every value flag of `serve` under its own
// name ("path", "listen", "max-size", "append-only", …), plus "grants" and "quotas". Relative
// file names in it are relative to the file's directory. Precedence: defaults < file <
// environment (STOWAGE_<FLAG>, for flags that take a value; empty values are ignored) <
// command line. Everything is validated at load; errors name the exact key path and are
// UsageErrors (exit status 2). buildServeConfig stays the one validator of flag values.

import { fsErrorReason } from "../errors.ts";
import { type FlagSpec, type FlagValue, type FlagValues, parseFlags, UsageError } from "./flags.ts";
import { buildServeConfig, SERVE_FLAGS, type ServeConfig } from "./serve_config.ts";
import { parseSize } from "./units.ts";
import { parseHtpasswd } from "../http/htpasswd.ts";
import {
  ambiguous,
  type Grant,
  type GrantMode,
  type Grants,
  isModeName,
  isPerProtocol,
  type LettersMap,
  parsePattern,
  type Pattern,
} from "../policy/grants.ts";
import type { QuotaSettings } from "../policy/quota_scopes.ts";
import { unsafeKeyReason } from "../storage/keys.ts";

export interface ConfigFile {
  /** The file it was read from. */
  file: string;
  /** Serve flag values from the file (kebab-case names, converted to flag value types). */
  settings: FlagValues;
  /** The "grants" section, or null when the file has none (then flags decide access). */
  grants: Grants | null;
  quotas: QuotaSettings;
}

export interface Env {
  get(name: string): string | undefined;
}

/** The flag the lead adds to SERVE_FLAGS; also accepted here when it is not there yet. */
export const CONFIG_FLAG: FlagSpec = {
  name: "config",
  type: "string",
  value: "FILE",
  help: "read settings, grants and quotas from a JSON file (flags and STOWAGE_* override it)",
};

const NOT_SETTINGS = new Set(["help", "version", "config"]);
const PATH_KEYS = new Set([
  "path",
  "htpasswd-file",
  "tls-cert",
  "tls-key",
  "log",
  "cpu-profile",
  "s3-access-key-file",
  "s3-secret-key-file",
]);
const SIZE_HINT = 'expected a positive integer or a size like "500G"';

/** The serve flag table with --config (whether or not the lead has added it yet). */
export function serveFlagSpecs(): FlagSpec[] {
  return SERVE_FLAGS.some((s) => s.name === "config") ? SERVE_FLAGS : [...SERVE_FLAGS, CONFIG_FLAG];
}

/** `max-size` → `STOWAGE_MAX_SIZE`. */
export function envName(flag: string): string {
  return `STOWAGE_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** True for names the htpasswd parser accepts as a user (letters, digits, `@._-`). */
export function isValidUserName(name: string): boolean {
  return name !== "" && parseHtpasswd(`${name}:x`).users.has(name);
}

function fail(path: string, message: string): never {
  throw new UsageError(path === "" ? `config: ${message}` : `config: ${path}: ${message}`);
}

/** `base.key` for plain keys, `base["odd key"]` otherwise. */
function keyPath(base: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return base === "" ? key : `${base}.${key}`;
  return `${base}[${JSON.stringify(key)}]`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function dirOf(file: string): string {
  const slash = file.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : file.slice(0, slash);
}

function settingValue(spec: FlagSpec, value: unknown, path: string, base: string): FlagValue {
  switch (spec.type) {
    case "boolean":
      if (typeof value !== "boolean") fail(path, "expected true or false");
      return value;
    case "integer": {
      if (spec.name === "max-size") {
        if (value === 0) return 0;
        const size = parseSize(value);
        if (size === null) fail(path, SIZE_HINT);
        return size;
      }
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        fail(path, "expected an integer");
      }
      return value;
    }
    case "list":
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
        fail(path, "expected a list of strings");
      }
      return value;
    default: {
      if (typeof value !== "string") fail(path, "expected a string");
      if (PATH_KEYS.has(spec.name) && value !== "" && value !== "-" && !value.startsWith("/")) {
        return `${base}/${value}`;
      }
      return value;
    }
  }
}

function parseLetters(value: unknown, path: string): LettersMap {
  if (!isObject(value)) fail(path, "expected a mode name or a map of prefixes to letters");
  const entries = Object.entries(value);
  if (entries.length === 0) fail(path, 'empty map (use "all", or list prefixes)');
  const map: LettersMap = {};
  for (const [prefix, letters] of entries) {
    const at = keyPath(path, prefix);
    if (prefix !== "" && unsafeKeyReason(prefix) !== null) fail(at, `invalid prefix "${prefix}"`);
    if (typeof letters !== "string") fail(at, "expected a string of letters from lrwWD");
    if (!/^[lrwWD]*$/.test(letters)) fail(at, `letters "${letters}" outside lrwWD`);
    map[prefix] = letters;
  }
  return map;
}

function parseSingleMode(value: unknown, path: string): GrantMode {
  if (typeof value === "string") {
    if (!isModeName(value)) fail(path, `unknown mode "${value}"`);
    return value;
  }
  return parseLetters(value, path);
}

function parseMode(value: unknown, path: string): GrantMode {
  if (value === undefined) fail(path, "missing");
  if (!isPerProtocol(value)) return parseSingleMode(value, path);
  const out: { restic?: GrantMode; borg?: GrantMode } = {};
  for (const protocol of ["restic", "borg"] as const) {
    const single = (value as Record<string, unknown>)[protocol];
    if (single !== undefined) out[protocol] = parseSingleMode(single, `${path}.${protocol}`);
  }
  return out as GrantMode;
}

function parsePatternAt(value: unknown, path: string): Pattern {
  if (value === undefined) fail(path, "missing");
  if (typeof value !== "string") fail(path, "expected a string");
  try {
    return parsePattern(value);
  } catch (error) {
    fail(path, (error as Error).message);
  }
}

/** Refuses duplicates and ambiguous pairs among patterns (`label` names an item in messages). */
function checkOverlaps(items: { pattern: Pattern; path: string; label: string }[]): void {
  items.forEach((item, i) => {
    for (const earlier of items.slice(0, i)) {
      const text = item.pattern.text;
      if (earlier.pattern.text === text) {
        fail(item.path, `duplicate of ${earlier.label} ("${text}")`);
      }
      if (ambiguous(earlier.pattern, item.pattern)) {
        fail(
          item.path,
          `"${text}" overlaps ${earlier.label} ("${earlier.pattern.text}"): neither is more specific`,
        );
      }
    }
  });
}

function parseGrants(value: unknown): Grants {
  if (!isObject(value)) fail("grants", "expected an object mapping user names to lists of grants");
  const grants: Grants = {};
  for (const [user, list] of Object.entries(value)) {
    const userPath = keyPath("grants", user);
    if (!isValidUserName(user)) fail(userPath, "invalid user name");
    if (!Array.isArray(list)) fail(userPath, "expected a list of grants");
    const parsed: Grant[] = [];
    const patterns: { pattern: Pattern; path: string; label: string }[] = [];
    list.forEach((entry, index) => {
      const at = `${userPath}[${index}]`;
      if (!isObject(entry)) fail(at, 'expected an object with "pattern" and "mode"');
      for (const key of Object.keys(entry)) {
        if (key !== "pattern" && key !== "mode" && key !== "quota") {
          fail(keyPath(at, key), "unknown key");
        }
      }
      const pattern = parsePatternAt(entry.pattern, `${at}.pattern`);
      const mode = parseMode(entry.mode, `${at}.mode`);
      const grant: Grant = { pattern: pattern.text, mode };
      if (entry.quota !== undefined) {
        const quota = parseSize(entry.quota);
        if (quota === null) fail(`${at}.quota`, SIZE_HINT);
        grant.quota = quota;
      }
      parsed.push(grant);
      patterns.push({ pattern, path: `${at}.pattern`, label: at });
    });
    checkOverlaps(patterns);
    grants[user] = parsed;
  }
  return grants;
}

function parseQuotas(value: unknown): QuotaSettings {
  const quotas: QuotaSettings = { repos: {}, users: {} };
  if (value === undefined) return quotas;
  if (!isObject(value)) fail("quotas", 'expected an object with "repos" and/or "users"');
  for (const [section, entries] of Object.entries(value)) {
    const at = keyPath("quotas", section);
    if (section !== "repos" && section !== "users") fail(at, "unknown key");
    if (!isObject(entries)) {
      fail(
        at,
        `expected an object mapping ${
          section === "repos" ? "repository patterns" : "user names"
        } to sizes`,
      );
    }
    const patterns: { pattern: Pattern; path: string; label: string }[] = [];
    for (const [name, limit] of Object.entries(entries)) {
      const entryPath = keyPath(at, name);
      if (section === "users") {
        if (!isValidUserName(name)) fail(entryPath, "invalid user name");
      } else {
        patterns.push({
          pattern: parsePatternAt(name, entryPath),
          path: entryPath,
          label: entryPath,
        });
      }
      const bytes = parseSize(limit);
      if (bytes === null) fail(entryPath, SIZE_HINT);
      quotas[section][name] = bytes;
    }
    checkOverlaps(patterns);
  }
  return quotas;
}

/** Parses and validates config text; throws UsageError naming the key path. */
export function parseConfigText(text: string, file: string): ConfigFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail("", `${file} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(parsed)) fail("", "expected a JSON object at the top level");
  const specs = new Map(
    SERVE_FLAGS.filter((s) => !NOT_SETTINGS.has(s.name)).map((s) => [s.name, s]),
  );
  const base = dirOf(file);
  const settings: FlagValues = {};
  let grants: Grants | null = null;
  let quotas: QuotaSettings = { repos: {}, users: {} };
  for (const [key, value] of Object.entries(parsed)) {
    if (key === "grants") grants = parseGrants(value);
    else if (key === "quotas") quotas = parseQuotas(value);
    else {
      const spec = specs.get(key);
      if (spec === undefined) fail(keyPath("", key), "unknown key");
      settings[key] = settingValue(spec, value, keyPath("", key), base);
    }
  }
  return { file, settings, grants, quotas };
}

/** Reads, parses and validates a config file; every problem is a UsageError. */
export async function loadConfigFile(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = fsErrorReason(error);
    fail("", `cannot read ${path}: ${reason}`);
  }
  return parseConfigText(text, path);
}

function envValue(spec: FlagSpec, raw: string, name: string): FlagValue {
  if (spec.type === "integer") {
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
      throw new UsageError(`invalid value "${raw}" for ${name}: expected an integer`);
    }
    return Number(raw);
  }
  return spec.type === "list" ? [raw] : raw;
}

/**
 * Merges defaults < config file < environment (STOWAGE_<FLAG> for every flag that takes a
 * value) < command-line values, into flag values for buildServeConfig.
 */
export function mergeServeSettings(
  flagValues: FlagValues,
  configFile: ConfigFile | null,
  env: Env,
): FlagValues {
  const merged: FlagValues = { ...configFile?.settings };
  for (const spec of serveFlagSpecs()) {
    if (spec.type === "boolean" || NOT_SETTINGS.has(spec.name)) continue;
    const name = envName(spec.name);
    const raw = env.get(name);
    if (raw !== undefined && raw !== "") merged[spec.name] = envValue(spec, raw, name);
  }
  for (const [key, value] of Object.entries(flagValues)) {
    if (value !== undefined) merged[key] = value;
  }
  return merged;
}

/** The config file to read: --config, else STOWAGE_CONFIG, else none. */
export function configPathFrom(flagValues: FlagValues, env: Env): string | null {
  const flag = flagValues.config;
  if (typeof flag === "string" && flag !== "") return flag;
  const fromEnv = env.get(envName("config"));
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : null;
}

/** True when the file sets any quota (per repository, per user or on a grant). */
export function configHasQuotas(file: ConfigFile): boolean {
  return Object.keys(file.quotas.repos).length > 0 || Object.keys(file.quotas.users).length > 0 ||
    Object.values(file.grants ?? {}).some((list) => list.some((g) => g.quota !== undefined));
}

/** Refuses combinations buildServeConfig cannot see: grants need authenticated users. */
export function checkServeCombination(config: ServeConfig, file: ConfigFile | null): void {
  if (file?.grants != null && config.noAuth) {
    throw new UsageError(
      "config: grants need authentication: remove --no-auth or the grants section",
    );
  }
}

export interface ServeSettings {
  /** null for --help / --version. */
  config: ServeConfig | null;
  values: FlagValues;
  file: ConfigFile | null;
}

/** `stowage serve` argv → validated ServeConfig, with --config and STOWAGE_* applied. */
export async function parseServeArgsWithConfig(
  argv: string[],
  env: Env = Deno.env,
): Promise<ServeSettings> {
  const { values, positionals } = parseFlags(serveFlagSpecs(), argv);
  if (values.help || values.version) return { config: null, values, file: null };
  const path = configPathFrom(values, env);
  const file = path === null ? null : await loadConfigFile(path);
  const merged = mergeServeSettings(values, file, env);
  const config = buildServeConfig(merged, positionals);
  checkServeCombination(config, file);
  return { config, values: merged, file };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** One line describing a valid config. */
export function summarizeConfig(file: ConfigFile): string {
  const grantCount = Object.values(file.grants ?? {}).reduce((n, list) => n + list.length, 0);
  const parts = [
    plural(Object.keys(file.settings).length, "setting"),
    file.grants === null
      ? "no grants (flags decide access)"
      : `${plural(Object.keys(file.grants).length, "user")} with ${plural(grantCount, "grant")}`,
    plural(Object.keys(file.quotas.repos).length, "repository quota"),
    plural(Object.keys(file.quotas.users).length, "user quota"),
  ];
  return `config ${file.file}: ok (${parts.join(", ")})`;
}

/** `stowage check-config FILE`: 0 and a summary line, or the error and 2. */
export async function runCheckConfig(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseFlags([SERVE_FLAGS.find((s) => s.name === "help")!], argv);
    if (values.help) {
      console.log("Usage: stowage check-config FILE\n\nValidates a config file without starting.");
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError("check-config expects exactly one FILE");
    const file = await loadConfigFile(positionals[0]);
    try {
      const settings = { ...file.settings };
      if (settings.backend === undefined) settings.path ??= "/";
      buildServeConfig(settings, []);
    } catch (error) {
      if (error instanceof UsageError) throw new UsageError(`config: ${error.message}`);
      throw error;
    }
    console.log(summarizeConfig(file));
    return 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`stowage: ${error.message}`);
    return 2;
  }
}
