// BorgStore `Range` handling for load (spec §5): which bytes a GET returns and with which status.
// Any Range header gives 206; forms the reference ignores give the whole item; suffixes longer
// than the item give the whole item (recommended instead of the reference's 500).

export interface LoadRange {
  status: 200 | 206;
  /** First byte returned. */
  offset: number;
  /** Number of bytes returned. */
  length: number;
}

const DIGITS = /^\d+$/;

/** Resolves a Range header (or its absence) against an item of `size` bytes. */
export function resolveRange(header: string | null, size: number): LoadRange {
  if (header === null) return { status: 200, offset: 0, length: size };
  const whole: LoadRange = { status: 206, offset: 0, length: size };
  if (!header.startsWith("bytes=")) return whole;
  const parts = header.slice("bytes=".length).split("-");
  if (parts.length !== 2) return whole; // multiple ranges, `bytes=0--1`, garbage
  const [first, last] = parts.map((part) => part.trim());
  if (first === "") {
    if (!DIGITS.test(last)) return whole;
    const suffix = Number(last);
    if (suffix === 0 || suffix >= size) return whole; // `bytes=-0` is offset 0 in the reference
    return { status: 206, offset: size - suffix, length: suffix };
  }
  if (!DIGITS.test(first)) return whole;
  const start = Number(first);
  const available = Math.max(size - start, 0);
  const offset = Math.min(start, size);
  if (last === "") return { status: 206, offset, length: available };
  if (!DIGITS.test(last)) return whole;
  const wanted = Number(last) - start + 1;
  if (wanted < 0) return { status: 206, offset, length: available }; // reference: "to the end"
  return { status: 206, offset, length: Math.min(wanted, available) };
}

/** A Content-Range value for a non-empty result, else null. */
export function contentRange(range: LoadRange, size: number): string | null {
  if (range.status !== 206 || range.length === 0) return null;
  return `bytes ${range.offset}-${range.offset + range.length - 1}/${size}`;
}
