// HTTP Range header parsing with the semantics of Go's net/http ServeContent, which the restic
// REST server uses: single and multiple ranges, suffix ranges, clamping, and the two 416 forms.

export interface ResolvedRange {
  start: number;
  length: number;
}

export type RangeResult =
  | { kind: "full" } // no Range, or the Range is ignored
  | { kind: "ranges"; ranges: ResolvedRange[] } // one or more satisfiable ranges
  | { kind: "unsatisfiable" } // every range starts at or past the end (416 with Content-Range)
  | { kind: "invalid" }; // syntax or unit error (416 without Content-Range)

const DIGITS = /^\d+$/;

function parseNonNegative(text: string): number | null {
  if (!DIGITS.test(text)) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : null;
}

/** Resolves a Range header against an object of `size` bytes. */
export function parseRange(header: string | null, size: number): RangeResult {
  if (header === null || header === "") return { kind: "full" };
  if (!header.startsWith("bytes=")) return { kind: "invalid" };
  const ranges: ResolvedRange[] = [];
  let noOverlap = false;
  for (const rawPart of header.slice("bytes=".length).split(",")) {
    const part = rawPart.trim();
    if (part === "") continue;
    const dash = part.indexOf("-");
    if (dash < 0) return { kind: "invalid" };
    const startText = part.slice(0, dash).trim();
    const endText = part.slice(dash + 1).trim();
    if (startText === "") {
      // suffix range: the last N bytes
      const suffix = parseNonNegative(endText);
      if (suffix === null) return { kind: "invalid" };
      const n = Math.min(suffix, size);
      if (n === 0) {
        // "bytes=-0" selects nothing: answered 416 instead of Go's odd empty 206.
        noOverlap = true;
        continue;
      }
      ranges.push({ start: size - n, length: n });
      continue;
    }
    const start = parseNonNegative(startText);
    if (start === null) return { kind: "invalid" };
    if (start >= size) {
      noOverlap = true;
      continue;
    }
    if (endText === "") {
      ranges.push({ start, length: size - start });
      continue;
    }
    let end = parseNonNegative(endText);
    if (end === null || start > end) return { kind: "invalid" };
    if (end >= size) end = size - 1;
    ranges.push({ start, length: end - start + 1 });
  }
  if (ranges.length === 0) return noOverlap ? { kind: "unsatisfiable" } : { kind: "full" };
  const total = ranges.reduce((sum, r) => sum + r.length, 0);
  if (total > size) return { kind: "full" };
  return { kind: "ranges", ranges };
}
