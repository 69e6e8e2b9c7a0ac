// Central validation of storage keys. Every key is checked here before any provider call:
// relative, slash-separated, no empty, "." or ".." segments, no NUL, no control characters,
// no backslash. Protocol-specific naming rules (restic IDs, borgstore names) come on top.

import { StowageError } from "../errors.ts";

/** Longest key accepted (whole path) and longest single segment. */
export const MAX_KEY_LENGTH = 1024;
export const MAX_SEGMENT_LENGTH = 255;

/** Suffix of in-progress upload files; never a valid key segment. */
export const TEMP_MARKER = ".stowage-tmp";

// deno-lint-ignore no-control-regex
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f\\]/;

/** Returns the reason a key is unsafe, or null when it is safe. "" (the root) is safe. */
export function unsafeKeyReason(key: string): string | null {
  if (key === "") return null;
  if (key.length > MAX_KEY_LENGTH) return "name too long";
  if (FORBIDDEN_CHARS.test(key)) return "name contains a control character or backslash";
  // the marker holds no "/": only a key that contains it can have a segment that does
  const marked = key.includes(TEMP_MARKER);
  for (const segment of key.split("/")) {
    if (segment === "") return "name has an empty segment";
    if (segment === "." || segment === "..") return "name has a dot segment";
    if (segment.length > MAX_SEGMENT_LENGTH) return "name segment too long";
    if (marked && segment.includes(TEMP_MARKER)) return "name is reserved";
  }
  return null;
}

/** Throws BadRequest unless the key is safe. */
export function assertSafeKey(key: string): string {
  const reason = unsafeKeyReason(key);
  if (reason !== null) throw new StowageError("BadRequest", reason);
  return key;
}

/** True for names of in-progress uploads, which no listing may show. */
export function isTempName(name: string): boolean {
  return name.includes(TEMP_MARKER);
}
