// restic REST URL handling as rest-server does it: percent-decoding before routing, the 301 to the
// canonical path, the split into repository folder (at most two levels, reserved names) and
// remainder, and routing of the remainder to an operation.

export const RESTIC_TYPES = ["data", "index", "keys", "locks", "snapshots"] as const;
export type ResticType = typeof RESTIC_TYPES[number];
const RESERVED = new Set<string>([...RESTIC_TYPES, "config"]);
const ID_PATTERN = /^[0-9a-f]{64}$/;

export type PathResult =
  | { kind: "redirect"; location: string }
  | { kind: "invalid" } // undecodable or NUL in a folder: 404
  | { kind: "ok"; folder: string[]; remainder: string };

/** Lexically cleans an absolute path like Go's path.Clean, keeping a trailing slash. */
export function cleanPath(path: string): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment);
  }
  let cleaned = "/" + out.join("/");
  if (path.endsWith("/") && cleaned !== "/") cleaned += "/";
  // "/a/." and "/a/.." also keep a trailing slash in Go's mux; restic never sends them.
  return cleaned;
}

/**
 * True when cleanPath would return `path` unchanged: absolute, no empty, "." or ".." segment. A
 * quick test that spares the usual request cleanPath's split and join.
 */
function isClean(path: string): boolean {
  return path.startsWith("/") && !path.includes("//") && !path.includes("/./") &&
    !path.includes("/../") && !path.endsWith("/.") && !path.endsWith("/..");
}

/** Decodes the raw (still percent-encoded) URL path and splits it. */
export function parseResticPath(rawPath: string, search: string): PathResult {
  let decoded = rawPath;
  if (rawPath.includes("%")) {
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      return { kind: "invalid" };
    }
  }
  // Control characters never name anything; refusing them here also keeps them out of the
  // Location header of the redirect below.
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return { kind: "invalid" };
  const cleaned = isClean(decoded) ? decoded : cleanPath(decoded);
  if (cleaned !== decoded) return { kind: "redirect", location: encodeURI(cleaned) + search };
  const pieces = decoded.split("/");
  // pieces[0] is "" (leading slash); candidates are the pieces strictly between the first and
  // the last, at most two of them (Go: SplitN(path, "/", 4)).
  const limited = pieces.length > 4 ? [...pieces.slice(0, 3), pieces.slice(3).join("/")] : pieces;
  const candidates = limited.slice(1, -1);
  const folder: string[] = [];
  for (const candidate of candidates) {
    if (RESERVED.has(candidate)) break;
    folder.push(candidate);
  }
  for (const component of folder) {
    if (component === "" || component === "." || component === ".." || component.includes("\0")) {
      return { kind: "invalid" };
    }
  }
  const prefix = folder.length === 0 ? "" : "/" + folder.join("/");
  return { kind: "ok", folder, remainder: decoded.slice(prefix.length) };
}

export type Route =
  | { kind: "repo" }
  | { kind: "config" }
  | { kind: "list"; type: ResticType }
  | { kind: "object"; type: ResticType; id: string }
  | { kind: "unknown" };

/** Maps a remainder such as `/data/<id>` to what it addresses. */
export function routeRemainder(remainder: string): Route {
  if (remainder === "/") return { kind: "repo" };
  if (remainder === "/config") return { kind: "config" };
  const parts = remainder.split("/");
  if (parts.length !== 3 || parts[0] !== "") return { kind: "unknown" };
  const type = parts[1] as ResticType;
  if (!(RESTIC_TYPES as readonly string[]).includes(type)) return { kind: "unknown" };
  if (parts[2] === "") return { kind: "list", type };
  if (ID_PATTERN.test(parts[2])) return { kind: "object", type, id: parts[2] };
  return { kind: "unknown" };
}

/** Methods each route accepts (for 405 and its Allow header). */
export function allowedMethods(route: Route): string[] {
  switch (route.kind) {
    case "repo":
      return ["POST"];
    case "list":
      return ["GET"];
    case "config":
    case "object":
      return ["HEAD", "GET", "POST", "DELETE"];
    default:
      return [];
  }
}

/** Storage key of an object inside a repository, in rest-server's on-disk layout. */
export function objectKey(repoKey: string, type: ResticType, id: string): string {
  const relative = type === "data" ? `data/${id.slice(0, 2)}/${id}` : `${type}/${id}`;
  return repoKey === "" ? relative : `${repoKey}/${relative}`;
}

/** Key relative to the repository, used for permission checks (`data/ab/<id>`, `config`). */
export function repoRelativeKey(type: ResticType | "config", id?: string): string {
  if (type === "config") return "config";
  return type === "data" ? `data/${id!.slice(0, 2)}/${id}` : `${type}/${id}`;
}
