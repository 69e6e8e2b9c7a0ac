// The ssh forced-command entry's view of SSH_ORIGINAL_COMMAND: which command lines of real
// clients are accepted (borgstore, borg 2, restic's rclone backend), and where the requested
// repository lies. Nothing here runs a shell or touches the disk except path resolution.

import { UsageError } from "./flags.ts";

export type SshRequest =
  | { protocol: "borgstore"; path: string }
  | { protocol: "restic"; path: string };

export class RefusedCommand extends Error {
  override name = "RefusedCommand";
}

const ENV_WORD = /^[A-Za-z_][A-Za-z0-9_]*=/;
/** borg options a client may send besides --backend (logging and lock waiting, spec §9.4). */
const BORG_FLAGS = new Set([
  "--info",
  "--debug",
  "--verbose",
  "-v",
  "--critical",
  "--error",
  "--warning",
  "--show-rc",
  "--log-json",
]);
const BORG_FLAGS_WITH_VALUE = new Set(["--lock-wait", "--debug-topic"]);
/** rclone flags restic or users put into rclone.args that change nothing here. */
const RCLONE_IGNORED = new Set(["--b2-hard-delete", "-v", "-vv", "--verbose", "-q", "--quiet"]);
const RCLONE_IGNORED_WITH_VALUE = new Set(["--bwlimit", "--cache-dir", "--log-level", "--config"]);

function basename(word: string): string {
  return word.slice(word.lastIndexOf("/") + 1);
}

/** Splits a command line at blanks; quotes and escapes are refused (no shell semantics). */
export function splitWords(command: string): string[] {
  if (/["'`\\$;&|<>(){}\n\r\t]/.test(command)) {
    throw new RefusedCommand("quotes, escapes and shell metacharacters are not accepted");
  }
  return command.split(" ").filter((w) => w !== "");
}

function backendPath(value: string): string {
  if (!value.startsWith("FILE:") && !value.startsWith("file://")) {
    throw new RefusedCommand(`unsupported backend ${value}`);
  }
  return value;
}

function parseBorgstore(words: string[]): SshRequest {
  let backend: string | null = null;
  let stdio = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === "--stdio") stdio = true;
    else if (w === "--backend" && i + 1 < words.length) backend = backendPath(words[++i]);
    else if (w.startsWith("--backend=")) backend = backendPath(w.slice("--backend=".length));
    else throw new RefusedCommand(`option ${w} is not accepted from the client`);
  }
  if (!stdio || backend === null) {
    throw new RefusedCommand("expected --stdio --backend FILE:<path>");
  }
  return { protocol: "borgstore", path: backend };
}

function parseBorgServe(words: string[]): SshRequest {
  let backend: string | null = null;
  let rest = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === "--rest") rest = true;
    else if (w === "--backend" && i + 1 < words.length) backend = backendPath(words[++i]);
    else if (w.startsWith("--backend=")) backend = backendPath(w.slice("--backend=".length));
    else if (BORG_FLAGS.has(w)) continue;
    else if (BORG_FLAGS_WITH_VALUE.has(w) && i + 1 < words.length) i++;
    else if ([...BORG_FLAGS_WITH_VALUE].some((f) => w.startsWith(`${f}=`))) continue;
    else throw new RefusedCommand(`option ${w} is not accepted from the client`);
  }
  if (!rest || backend === null) {
    throw new RefusedCommand("expected serve --rest --backend FILE:<path>");
  }
  return { protocol: "borgstore", path: backend };
}

function parseResticServe(words: string[]): SshRequest {
  const positionals: string[] = [];
  let stdio = false;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === "--stdio") stdio = true;
    else if (RCLONE_IGNORED.has(w)) continue;
    else if (RCLONE_IGNORED_WITH_VALUE.has(w) && i + 1 < words.length) i++;
    else if ([...RCLONE_IGNORED_WITH_VALUE].some((f) => w.startsWith(`${f}=`))) continue;
    else if (w.startsWith("-")) {
      throw new RefusedCommand(`option ${w} is not accepted from the client`);
    } else positionals.push(w);
  }
  if (!stdio || positionals.length !== 1) {
    throw new RefusedCommand("expected serve restic --stdio <path>");
  }
  return { protocol: "restic", path: positionals[0] };
}

/** Parses what the client asked ssh to run; throws RefusedCommand for anything else. */
export function parseSshCommand(command: string | undefined): SshRequest {
  if (command === undefined || command.trim() === "") {
    throw new RefusedCommand("no command given (interactive logins are not allowed)");
  }
  let words = splitWords(command);
  while (words.length > 0 && ENV_WORD.test(words[0])) words = words.slice(1);
  if (words.length === 0) throw new RefusedCommand("no command given");
  const program = basename(words[0]);
  if (program === "borgstore-server-rest") return parseBorgstore(words.slice(1));
  if (words[1] === "serve" && (program === "rclone" || program === "stowage")) {
    if (words[2] === "restic") return parseResticServe(words.slice(3));
  }
  if (words[0] === "serve" && words[1] === "restic") return parseResticServe(words.slice(2));
  if (/^borg[0-9.]*(\.exe)?$/.test(program) && words[1] === "serve") {
    return parseBorgServe(words.slice(2));
  }
  throw new RefusedCommand(`command not allowed: ${program}`);
}

/** Turns a client path (`FILE:rel`, `FILE:~/x`, `file:///abs`, `~/x`, `rel`) into an absolute one. */
export function clientPath(raw: string, home: string): string {
  let path = raw;
  if (path.startsWith("file://")) {
    path = path.slice("file://".length);
    if (!path.startsWith("/")) throw new RefusedCommand(`invalid backend URL ${raw}`);
    try {
      path = decodeURIComponent(path);
    } catch {
      throw new RefusedCommand(`invalid backend URL ${raw}`);
    }
  } else if (path.startsWith("FILE:")) {
    path = path.slice("FILE:".length);
  }
  if (path === "~" || path.startsWith("~/")) path = home + path.slice(1);
  else if (path.startsWith("~")) throw new RefusedCommand("~user paths are not accepted");
  if (!path.startsWith("/")) path = path === "" ? home : `${home}/${path}`;
  const parts: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (parts.length === 0) throw new RefusedCommand("path leaves the filesystem root");
      parts.pop();
    } else {
      parts.push(segment);
    }
  }
  return "/" + parts.join("/");
}

/**
 * Resolves symlinks of the longest existing prefix of `path` and checks that the result lies
 * inside one of `roots` (already real paths). Returns the resolved path.
 */
export async function resolveInsideRoots(path: string, roots: string[]): Promise<string> {
  const parts = path.split("/").filter((p) => p !== "");
  let existing = parts.length;
  let real = "/";
  for (; existing >= 0; existing--) {
    try {
      real = await Deno.realPath("/" + parts.slice(0, existing).join("/"));
      break;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  const rest = parts.slice(existing);
  const resolved = real === "/" ? "/" + rest.join("/") : [real, ...rest].join("/");
  const inside = roots.some((root) => resolved === root || resolved.startsWith(root + "/"));
  if (!inside) throw new RefusedCommand(`path ${path} is outside the allowed roots`);
  const root = roots.find((r) => resolved === r || resolved.startsWith(r + "/"))!;
  if (resolved === root) throw new RefusedCommand("the root itself cannot be a repository");
  return resolved;
}

/** Validates --root values: must exist, resolved to real paths. */
export async function realRoots(roots: string[]): Promise<string[]> {
  if (roots.length === 0) throw new UsageError("at least one --root DIR is required");
  const out: string[] = [];
  for (const root of roots) {
    try {
      out.push(await Deno.realPath(root));
    } catch {
      throw new UsageError(`--root ${root} does not exist`);
    }
  }
  return out;
}
