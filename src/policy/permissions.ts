// The permission model shared by both protocols (design §4, borgstore spec §6).
// Owns: the letters `lrwWD`, permission maps (key prefix → letters), the hierarchical first-match
// lookup, the `borgbackup-*` shortcuts of borgstore-server-rest and the modes of `borg serve
// --rest` (verbatim data), parsing of a `--permissions` value, and restic's append-only map.

import { StowageError } from "../errors.ts";

/** Maps key prefixes ("" = root) to permission letters; null allows everything. */
export type PermissionMap = Record<string, string> | null;

/** All permission letters: list, read, write new, overwrite, delete. */
export const PERMISSION_LETTERS = "lrwWD";

/** Shortcuts of `borgstore-server-rest --permissions` (spec §6.6, verbatim). */
export const BORGSTORE_SHORTCUTS: Readonly<Record<string, PermissionMap>> = {
  "borgbackup-all": null,
  "borgbackup-no-delete": {
    "": "lr",
    "archives": "lrw",
    "cache": "lrwWD",
    "config": "lrW",
    "data": "lrw",
    "keys": "lr",
    "locks": "lrwD",
  },
  "borgbackup-write-only": {
    "": "l",
    "archives": "lw",
    "cache": "lrwWD",
    "config": "lrW",
    "data": "lw",
    "keys": "lr",
    "locks": "lrwD",
  },
  "borgbackup-read-only": {
    "": "lr",
    "locks": "lrwD",
  },
};

/** Modes of `borg serve --rest --permissions` (spec §6.7, verbatim). */
export const BORG_MODES: Readonly<Record<string, PermissionMap>> = {
  "all": null,
  "no-delete": {
    "": "lr",
    "archives": "lrw",
    "cache": "lrwWD",
    "config": "lrW",
    "index": "lrwWD",
    "keys": "lr",
    "locks": "lrwD",
    "packs": "lrw",
  },
  "write-only": {
    "": "l",
    "archives": "lw",
    "cache": "lrwWD",
    "config": "lrW",
    "index": "lrwWD",
    "keys": "lr",
    "locks": "lrwD",
    "packs": "lw",
  },
  "read-only": {
    "": "lr",
    "locks": "lrwD",
  },
};

/** restic's `--append-only`: read and add everything, delete only locks; never overwrite. */
export const RESTIC_APPEND_ONLY: PermissionMap = { "": "lrw", "locks": "lrwD" };

/**
 * restic repositories under a named mode (ssh forced commands, grants). restic never overwrites,
 * so no map has `W`; every map keeps `locks` at lrwD because every restic command (restore and
 * check too) creates and removes its own lock files. The root "" decides for `config` and
 * repository creation unless listed.
 */
export const RESTIC_MODES: Readonly<Record<string, PermissionMap>> = {
  "all": null,
  "append-only": RESTIC_APPEND_ONLY,
  "no-delete": RESTIC_APPEND_ONLY,
  "write-only": {
    "": "lw",
    "config": "lrw",
    "keys": "lrw",
    "index": "lrw",
    "snapshots": "lrw",
    "data": "lw",
    "locks": "lrwD",
  },
  "read-only": { "": "lr", "locks": "lrwD" },
};

function copyMap(map: PermissionMap): PermissionMap {
  return map === null ? null : { ...map };
}

/** The letters that decide for `name`, or null when no candidate prefix is present. */
function decidingLetters(map: Record<string, string>, name: string): string | null {
  let candidate = name;
  while (true) {
    if (Object.hasOwn(map, candidate)) return map[candidate];
    if (candidate === "") return null;
    const slash = candidate.lastIndexOf("/");
    candidate = slash < 0 ? "" : candidate.slice(0, slash);
  }
}

/**
 * True when the map grants at least one of `requiredAnyOf` for `name`. Candidates are the name
 * and its parents (`a/b/c`, `a/b`, `a`, `""`); the first one present in the map decides.
 */
export function isPermitted(map: PermissionMap, name: string, requiredAnyOf: string): boolean {
  if (map === null || Object.keys(map).length === 0) return true;
  const letters = decidingLetters(map, name);
  if (letters === null) return false;
  for (const letter of requiredAnyOf) {
    if (letters.includes(letter)) return true;
  }
  return false;
}

/** Throws Forbidden unless the map grants one of `requiredAnyOf` for `name`. */
export function checkPermission(map: PermissionMap, name: string, requiredAnyOf: string): void {
  if (!isPermitted(map, name, requiredAnyOf)) {
    throw new StowageError(
      "Forbidden",
      `One of permissions '${requiredAnyOf}' required for '${name}'`,
    );
  }
}

function invalidValue(value: string): Error {
  return new Error(
    `Invalid --permissions value: '${value}'. Use a shortcut (borgbackup-all, ` +
      `borgbackup-no-delete, borgbackup-write-only, borgbackup-read-only), a borg mode ` +
      `(all, no-delete, write-only, read-only) or a JSON object.`,
  );
}

const LETTERS_ONLY = /^[lrwWD]*$/;

/**
 * Parses a `--permissions` value: a borgstore shortcut, a borg mode, or a JSON object mapping
 * prefixes to letters (JSON `null` allows everything). Throws an Error with the reference's
 * message for anything else.
 */
export function parsePermissions(value: string): PermissionMap {
  if (Object.hasOwn(BORGSTORE_SHORTCUTS, value)) return copyMap(BORGSTORE_SHORTCUTS[value]);
  if (Object.hasOwn(BORG_MODES, value)) return copyMap(BORG_MODES[value]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw invalidValue(value);
  }
  if (parsed === null) return null;
  if (typeof parsed !== "object" || Array.isArray(parsed)) throw invalidValue(value);
  const map: Record<string, string> = {};
  for (const [key, letters] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof letters !== "string" || !LETTERS_ONLY.test(letters)) throw invalidValue(value);
    map[key] = letters;
  }
  return map;
}
