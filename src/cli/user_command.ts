// `stowage user add|passwd|remove|list`: manages the htpasswd file without Apache's tools.
// Passwords come from --password-stdin, --password-file or a prompt on the terminal (twice,
// without echo), never from argv. Hashes are bcrypt (cost 12 by default) written as `$2y$`,
// which Apache's htpasswd and stowage both accept. Every change rewrites the file atomically
// (temp file + fsync + rename + directory fsync), keeps comments and foreign lines in place,
// keeps the owner when run as root, and leaves mode 0600. A running server notices the change
// on SIGHUP or by itself (mtime/size, checked at most every 30 s).

import { type FlagSpec, parseFlags, renderHelp, UsageError } from "./flags.ts";
import {
  configPathFrom,
  type Env,
  isValidUserName,
  loadConfigFile,
  mergeServeSettings,
} from "./config_file.ts";
import { parseHtpasswd } from "../http/htpasswd.ts";

export const USER_FLAGS: FlagSpec[] = [
  {
    name: "htpasswd-file",
    type: "string",
    value: "FILE",
    defaultText: "<path>/.htpasswd",
    help: "the htpasswd file to change",
  },
  { name: "path", type: "string", value: "DIR", help: "data directory (file <DIR>/.htpasswd)" },
  { name: "config", type: "string", value: "FILE", help: "take htpasswd-file or path from FILE" },
  {
    name: "password-stdin",
    type: "boolean",
    help: "read the password from the first line of stdin",
  },
  {
    name: "password-file",
    type: "string",
    value: "FILE",
    help: "read the password from FILE (first line)",
  },
  { name: "cost", type: "integer", value: "N", defaultText: "12", help: "bcrypt cost, 4 to 17" },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
];

const USAGE = "stowage user add|passwd|remove NAME [flags] | stowage user list [flags]";
const SUMMARY = "Manages users in the htpasswd file (bcrypt); a running server picks changes up.";

export interface UserCommandIo {
  /** Raw stdin (piped password or terminal keystrokes). */
  stdin: ReadableStream<Uint8Array>;
  isTerminal: () => boolean;
  setRaw: (raw: boolean) => void;
  out: (text: string) => void;
  err: (text: string) => void;
  env: Env;
}

/** Writes all of `text` to a synchronous writer (a pipe may take less per call). */
function writeAll(writer: { writeSync(p: Uint8Array): number }, text: string): void {
  const data = new TextEncoder().encode(text);
  let at = 0;
  while (at < data.byteLength) at += writer.writeSync(data.subarray(at));
}

function withDefaults(io: Partial<UserCommandIo>): UserCommandIo {
  return {
    stdin: io.stdin ?? Deno.stdin.readable,
    isTerminal: io.isTerminal ?? (() => Deno.stdin.isTerminal()),
    setRaw: io.setRaw ?? ((raw) => Deno.stdin.setRaw(raw)),
    out: io.out ?? ((text) => writeAll(Deno.stdout, text)),
    err: io.err ?? ((text) => writeAll(Deno.stderr, text)),
    env: io.env ?? Deno.env,
  };
}

/** A failure that is not a usage error: exit status 1. */
class CommandError extends Error {}

/** The htpasswd file: --htpasswd-file, else <path>/.htpasswd, from flags > env > config. */
async function htpasswdPath(values: Record<string, unknown>, env: Env): Promise<string> {
  const configPath = configPathFrom(values as Record<string, string>, env);
  const file = configPath === null ? null : await loadConfigFile(configPath);
  const flags: Record<string, string | undefined> = {
    "htpasswd-file": values["htpasswd-file"] as string | undefined,
    path: values.path as string | undefined,
  };
  const merged = mergeServeSettings(flags, file, env);
  const explicit = merged["htpasswd-file"];
  if (typeof explicit === "string" && explicit !== "") return explicit;
  const dir = merged.path;
  if (typeof dir === "string" && dir !== "") return `${dir.replace(/\/+$/, "") || "/"}/.htpasswd`;
  throw new UsageError("which htpasswd file? use --htpasswd-file FILE or --path DIR");
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

function firstLine(text: string): string {
  return text.split("\n")[0].replace(/\r$/, "");
}

/** Reads one line from a terminal in raw mode (no echo); Ctrl-C or Ctrl-D aborts. */
async function promptHidden(
  io: UserCommandIo,
  prompt: string,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<string> {
  io.err(prompt);
  io.setRaw(true);
  const bytes: number[] = [];
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new CommandError("aborted");
      for (const byte of value) {
        if (byte === 0x0d || byte === 0x0a) return new TextDecoder().decode(new Uint8Array(bytes));
        if (byte === 0x03 || byte === 0x04) throw new CommandError("aborted");
        if (byte === 0x7f || byte === 0x08) bytes.pop();
        else bytes.push(byte);
      }
    }
  } finally {
    io.setRaw(false);
    io.err("\n");
  }
}

async function readPassword(values: Record<string, unknown>, io: UserCommandIo): Promise<string> {
  let password: string;
  if (typeof values["password-file"] === "string") {
    try {
      password = firstLine(await Deno.readTextFile(values["password-file"]));
    } catch (error) {
      throw new CommandError(`cannot read --password-file: ${(error as Error).name}`);
    }
  } else if (values["password-stdin"] === true) {
    password = firstLine(await readAll(io.stdin));
  } else if (io.isTerminal()) {
    const reader = io.stdin.getReader();
    try {
      password = await promptHidden(io, "New password: ", reader);
      const again = await promptHidden(io, "Re-type new password: ", reader);
      if (again !== password) throw new CommandError("passwords do not match");
    } finally {
      reader.releaseLock();
    }
  } else {
    throw new UsageError(
      "no terminal to ask for the password: use --password-stdin or --password-file",
    );
  }
  if (password === "") throw new CommandError("empty password refused");
  if (new TextEncoder().encode(password).byteLength > 72) {
    io.err("warning: bcrypt uses only the first 72 bytes of the password\n");
  }
  return password;
}

/** A bcrypt hash in Apache's `$2y$` form. */
export async function hashPassword(password: string, cost = 12): Promise<string> {
  const bcrypt = (await import("bcryptjs")).default;
  const hash = await bcrypt.hash(password, await bcrypt.genSalt(cost));
  return `$2y$${hash.slice(4)}`;
}

/** The user named on a line, as the htpasswd parser reads it; null for comments and blanks. */
function lineUser(line: string, index: number): string | null {
  const text = index === 0 ? line.replace(/^\uFEFF/, "") : line;
  if (text.trim() === "" || text.startsWith("#")) return null;
  const colon = text.indexOf(":");
  return colon < 0 ? null : text.slice(0, colon).trimStart();
}

interface Table {
  lines: string[];
  newline: string;
}

function splitTable(text: string): Table {
  const newline = text.includes("\r\n") ? "\r\n" : "\n";
  const lines = text === ""
    ? []
    : text.split("\n").map((l) => (newline === "\r\n" ? l.replace(/\r$/, "") : l));
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return { lines, newline };
}

/** Writes `text` to `file` atomically, mode 0600, keeping the old file's owner if possible. */
async function replaceFile(file: string, text: string, old: Deno.FileInfo | null): Promise<void> {
  const slash = file.lastIndexOf("/");
  const dir = slash < 0 ? "." : file.slice(0, slash) || "/";
  const base = file.slice(slash + 1);
  const temp = `${dir}/.${base}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const handle = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  try {
    const data = new TextEncoder().encode(text);
    let at = 0;
    while (at < data.byteLength) at += await handle.write(data.subarray(at));
    await handle.sync();
    handle.close();
    await Deno.chmod(temp, 0o600);
    if (old !== null && old.uid !== null && old.gid !== null) {
      await Deno.chown(temp, old.uid, old.gid).catch(() => {}); // only root may; fine otherwise
    }
    const info = await Deno.stat(temp);
    const oldMtime = old?.mtime?.getTime();
    if (old !== null && info.size === old.size && info.mtime?.getTime() === oldMtime) {
      // Same size and same mtime would look unchanged to the server's reload check.
      const later = new Date((oldMtime ?? 0) + 1000);
      await Deno.utime(temp, later, later);
    }
    await Deno.rename(temp, file);
  } catch (error) {
    try {
      handle.close();
    } catch { /* already closed */ }
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  try {
    const dirHandle = await Deno.open(dir, { read: true });
    await dirHandle.sync().catch(() => {});
    dirHandle.close();
  } catch { /* directory fsync is best effort */ }
}

async function statOrNull(file: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

function sameStamp(a: Deno.FileInfo | null, b: Deno.FileInfo | null): boolean {
  if (a === null || b === null) return a === b;
  return a.size === b.size && a.mtime?.getTime() === b.mtime?.getTime() && a.ino === b.ino;
}

/**
 * Applies `edit` to the file's lines and replaces the file; retries when someone else changed
 * the file meanwhile. `edit` throws CommandError to refuse.
 */
async function editFile(
  file: string,
  create: boolean,
  edit: (table: Table) => void,
): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = await statOrNull(file);
    if (before === null && !create) {
      throw new CommandError(`cannot read ${file}: no such file or directory`);
    }
    const text = before === null ? "" : await Deno.readTextFile(file);
    const table = splitTable(text);
    edit(table);
    const out = table.lines.length === 0 ? "" : table.lines.join(table.newline) + table.newline;
    if (!sameStamp(before, await statOrNull(file))) continue;
    await replaceFile(file, out, before);
    return;
  }
  throw new CommandError(`${file} keeps changing; try again`);
}

function indexesOf(table: Table, name: string): number[] {
  const found: number[] = [];
  table.lines.forEach((line, i) => {
    if (lineUser(line, i) === name) found.push(i);
  });
  return found;
}

function requireName(positionals: string[], sub: string): string {
  if (positionals.length !== 2) throw new UsageError(`user ${sub} expects exactly one NAME`);
  const name = positionals[1];
  if (!isValidUserName(name)) {
    throw new UsageError(
      `invalid user name "${name}": use letters, digits, '_', '-', '.' and '@' only`,
    );
  }
  return name;
}

async function run(argv: string[], io: UserCommandIo): Promise<number> {
  const { values, positionals } = parseFlags(USER_FLAGS, argv);
  if (values.help || positionals.length === 0) {
    io.out(renderHelp(USAGE, SUMMARY, USER_FLAGS));
    return values.help ? 0 : 2;
  }
  const sub = positionals[0];
  const cost = (values.cost as number | undefined) ?? 12;
  if (cost < 4 || cost > 17) throw new UsageError(`invalid --cost ${cost}: expected 4 to 17`);
  switch (sub) {
    case "list": {
      if (positionals.length !== 1) throw new UsageError("user list expects no NAME");
      const file = await htpasswdPath(values, io.env);
      let text: string;
      try {
        text = await Deno.readTextFile(file);
      } catch {
        throw new CommandError(`cannot read ${file}`);
      }
      for (const user of parseHtpasswd(text).users.keys()) io.out(`${user}\n`);
      return 0;
    }
    case "add":
    case "passwd": {
      const name = requireName(positionals, sub);
      const file = await htpasswdPath(values, io.env);
      if (sub === "add" && (await statOrNull(file)) !== null) {
        const existing = splitTable(await Deno.readTextFile(file));
        if (indexesOf(existing, name).length > 0) {
          throw new CommandError(`user ${name} already exists (use: stowage user passwd ${name})`);
        }
      }
      if (sub === "passwd") {
        const existing = (await statOrNull(file)) === null
          ? null
          : splitTable(await Deno.readTextFile(file));
        if (existing === null || indexesOf(existing, name).length === 0) {
          throw new CommandError(`no user ${name} in ${file}`);
        }
      }
      const line = `${name}:${await hashPassword(await readPassword(values, io), cost)}`;
      await editFile(file, sub === "add", (table) => {
        const at = indexesOf(table, name);
        if (sub === "add") {
          if (at.length > 0) throw new CommandError(`user ${name} already exists`);
          table.lines.push(line);
          return;
        }
        if (at.length === 0) throw new CommandError(`no user ${name} in ${file}`);
        table.lines[at[0]] = line;
        for (const i of at.slice(1).reverse()) table.lines.splice(i, 1);
      });
      io.err(`${sub === "add" ? "Added" : "Updated"} user ${name} in ${file}\n`);
      return 0;
    }
    case "remove": {
      const name = requireName(positionals, sub);
      const file = await htpasswdPath(values, io.env);
      await editFile(file, false, (table) => {
        const at = indexesOf(table, name);
        if (at.length === 0) throw new CommandError(`no user ${name} in ${file}`);
        for (const i of at.reverse()) table.lines.splice(i, 1);
      });
      io.err(`Removed user ${name} from ${file}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown user command "${sub}": use add, passwd, remove or list`);
  }
}

/** `stowage user …`; returns the exit status (0 ok, 1 failure, 2 usage error). */
export async function runUserCommand(
  argv: string[],
  io: Partial<UserCommandIo> = {},
): Promise<number> {
  const full = withDefaults(io);
  try {
    return await run(argv, full);
  } catch (error) {
    if (error instanceof UsageError) {
      full.err(`stowage: ${error.message}\n`);
      return 2;
    }
    if (error instanceof CommandError) {
      full.err(`stowage: ${error.message}\n`);
      return 1;
    }
    full.err(`stowage: ${(error as Error).message}\n`);
    return 1;
  }
}
