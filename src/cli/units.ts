// Human units shared by the config file, `stowage status` and `stowage user`: byte sizes
// ("500G", "1.5TiB", 1073741824), durations ("2d", "36h", "1d12h") and their display forms.
// Sizes use SI multiples for K/M/G/T/P (as borg's --storage-quota) and powers of two for Ki…Pi.

const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([KMGTP])(i)?)?B?$/i;
const POWERS: Record<string, number> = { K: 1, M: 2, G: 3, T: 4, P: 5 };

/**
 * Parses a positive byte size: a JSON integer, or a string such as "500G", "1.5TiB", "200M",
 * "4096". Returns null for anything else (zero, negative, fractional bytes, unknown units).
 */
export function parseSize(value: unknown): number | null {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value > 0 ? value : null;
  }
  if (typeof value !== "string") return null;
  const match = SIZE.exec(value.trim());
  if (match === null) return null;
  const [, digits, unit, binary] = match;
  const base = binary ? 1024 : 1000;
  const bytes = Number(digits) * (unit ? base ** POWERS[unit.toUpperCase()] : 1);
  if (!Number.isFinite(bytes)) return null;
  const rounded = Math.floor(bytes);
  if (!unit && rounded !== bytes) return null;
  return Number.isSafeInteger(rounded) && rounded > 0 ? rounded : null;
}

const DURATION_PART = /(\d+(?:\.\d+)?)(w|d|h|m|s)/gy;
const DURATION_MS: Record<string, number> = {
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
};

/** Parses a duration such as "2d", "36h", "1d12h", "90m", "1w"; null when malformed or zero. */
export function parseDuration(text: string): number | null {
  let total = 0;
  let at = 0;
  DURATION_PART.lastIndex = 0;
  while (at < text.length) {
    DURATION_PART.lastIndex = at;
    const match = DURATION_PART.exec(text);
    if (match === null) return null;
    total += Number(match[1]) * DURATION_MS[match[2]];
    at = DURATION_PART.lastIndex;
  }
  return text.length > 0 && total > 0 ? Math.round(total) : null;
}

/** Bytes in binary units with one decimal: "0 B", "512 B", "1.5 KiB", "2.0 GiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A duration in the largest fitting unit: "45s", "12m", "5h", "3d". */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}
