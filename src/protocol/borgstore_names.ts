// BorgStore names (spec §4) and request targets (spec §2.3).
// Owns: the seven reference name rules with their exact messages plus the recommended extras
// (no empty or "." segments, no control characters), the listing filter, and turning a raw,
// not percent-decoded request path into a name.

import { StowageError } from "../errors.ts";

export const MAX_NAME_LENGTH = 100;

// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\u0000-\u007f]/;

/** Returns the 400 message for an invalid name, or null when the name is valid. */
export function nameError(name: string): string | null {
  if (name.length > MAX_NAME_LENGTH) return `name is too long (max: ${MAX_NAME_LENGTH}): ${name}`;
  if (NON_ASCII.test(name)) return `name must encode to plain ascii, but failed with: ${name}`;
  if (name.startsWith("/") || name.endsWith("/") || name.includes("..")) {
    return `name must be relative and not contain '..': ${name}`;
  }
  if (name.includes("\\") || name.includes(" ")) {
    return `name must not contain backslashes or blanks: ${name}`;
  }
  if (/[A-Z]/.test(name)) return `name must be lowercase, but got: ${name}`;
  if (name.endsWith(".tmp")) return `name must not end with .tmp, but got: ${name}`;
  if (name.endsWith(".hid")) return `name must not end with .hid, but got: ${name}`;
  // Beyond the reference (recommended by the spec): control characters, empty and "." segments.
  if (CONTROL_CHARS.test(name)) return `name must not contain control characters: ${name}`;
  if (name !== "" && name.split("/").some((s) => s === "" || s === ".")) {
    return `name must not contain empty or '.' segments: ${name}`;
  }
  return null;
}

/** Throws BadRequest unless `name` is a valid name ("" = the root is valid). */
export function validateName(name: string): string {
  const message = nameError(name);
  if (message !== null) throw new StowageError("BadRequest", message);
  return name;
}

/** True when a directory entry's own name may appear in a listing. */
export function isListableName(entryName: string): boolean {
  return entryName !== "" && !entryName.includes("/") && nameError(entryName) === null;
}

/** A request target split into what the dispatcher needs. */
export interface Target {
  /** Name: the path without leading and trailing slashes, not percent-decoded. */
  name: string;
  /** The path (after collapsing leading slashes) ends with "/": GET lists. */
  trailingSlash: boolean;
}

/** Parses a raw path (starting with "/", query already removed) into a name. */
export function parseTarget(path: string): Target {
  const collapsed = "/" + path.replace(/^\/+/, "");
  return {
    name: collapsed.replace(/^\/+/, "").replace(/\/+$/, ""),
    trailingSlash: collapsed.endsWith("/"),
  };
}

/** The raw path of a request URL: no percent-decoding, no dot-segment resolution. */
export function rawPath(url: string): string {
  const scheme = url.indexOf("://");
  const start = scheme < 0 ? 0 : url.indexOf("/", scheme + 3);
  if (start < 0) return "/";
  let end = url.length;
  for (const mark of ["?", "#"]) {
    const at = url.indexOf(mark, start);
    if (at >= 0 && at < end) end = at;
  }
  return url.slice(start, end) || "/";
}

/**
 * Form-decoded query parameters of a request URL (`+` is a space). Empty values count as absent;
 * of repeated keys the first non-empty value wins.
 */
export function queryParams(url: string): (key: string) => string | null {
  const question = url.indexOf("?");
  if (question < 0) return () => null;
  const hash = url.indexOf("#", question);
  const params = new URLSearchParams(url.slice(question + 1, hash < 0 ? undefined : hash));
  return (key) => params.getAll(key).find((value) => value !== "") ?? null;
}
