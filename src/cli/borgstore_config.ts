// The `borgstore-server-rest` personality: the reference server's flags verbatim (--host, --port,
// --backend, --username, --password, --permissions, --quota, --stdio, --socket-activation), plus
// --password-file / BORGSTORE_PASSWORD so the secret need not be on argv, and the connection
// timeouts of `stowage serve` (--read-header-timeout, --idle-timeout).

import { fsErrorReason } from "../errors.ts";
import { type FlagSpec, type FlagValues, parseFlags, UsageError } from "./flags.ts";
import { parsePermissions, type PermissionMap } from "../policy/permissions.ts";
import type { ConnectionTimeouts } from "../transport/timeouts.ts";
import { TIMEOUT_FLAGS, timeoutsFrom } from "./timeout_flags.ts";

export interface BorgstoreConfig {
  host: string;
  port: number;
  /** Absolute path of the store's base directory. */
  backendPath: string;
  username: string | null;
  password: string | null;
  permissions: PermissionMap;
  quota: number | null;
  stdio: boolean;
  socketActivation: boolean;
  debug: boolean;
  /** Header-read and idle timeouts of the TCP and socket-activated listeners. */
  timeouts: ConnectionTimeouts;
}

export const BORGSTORE_FLAGS: FlagSpec[] = [
  {
    name: "host",
    type: "string",
    value: "HOST",
    defaultText: "127.0.0.1",
    help: "address to bind",
  },
  { name: "port", type: "integer", value: "PORT", defaultText: "5618", help: "port to bind" },
  {
    name: "backend",
    type: "string",
    value: "URL",
    help: "store location: file:///absolute/path or FILE:path (relative, ~ and absolute)",
  },
  { name: "username", type: "string", value: "USER", help: "Basic auth user name" },
  {
    name: "password",
    type: "string",
    value: "PASSWORD",
    secret: true,
    help: "Basic auth password (prefer --password-file or BORGSTORE_PASSWORD)",
  },
  {
    name: "password-file",
    type: "string",
    value: "FILE",
    help: "read the Basic auth password from FILE (first line)",
  },
  {
    name: "permissions",
    type: "string",
    value: "MODE",
    help: "borgbackup-all|-no-delete|-write-only|-read-only, all|no-delete|write-only|read-only, " +
      "or a JSON map of path prefix to letters lrwWD",
  },
  { name: "quota", type: "integer", value: "BYTES", help: "store size limit in bytes (quota.hid)" },
  { name: "stdio", type: "boolean", help: "speak HTTP/1.1 on stdin/stdout (for ssh)" },
  {
    name: "socket-activation",
    type: "boolean",
    help: "serve the socket passed by systemd (LISTEN_FDS) instead of --host/--port",
  },
  ...TIMEOUT_FLAGS,
  { name: "debug", type: "boolean", help: "log every request on stderr" },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
  { name: "version", short: "v", type: "boolean", help: "show the version" },
];

/** Resolves `--backend`: `file:///abs` (percent-decoded) or `FILE:path` (spec §9.5). */
export function resolveBackend(backend: string, cwd: string, home: string | undefined): string {
  let path: string;
  if (backend.startsWith("FILE:")) {
    path = backend.slice("FILE:".length);
    if (path === "~" || path.startsWith("~/")) {
      if (!home) throw new UsageError(`Invalid backend URL: ${backend} (HOME is not set)`);
      path = home + path.slice(1);
    } else if (path.startsWith("~")) {
      throw new UsageError(`Invalid backend URL: ${backend} (~user is not supported)`);
    }
    if (!path.startsWith("/")) path = path === "" ? cwd : `${cwd}/${path}`;
  } else if (backend.startsWith("file://")) {
    const rest = backend.slice("file://".length);
    if (!rest.startsWith("/")) throw new UsageError(`Invalid backend URL: ${backend}`);
    try {
      path = decodeURIComponent(rest);
    } catch {
      throw new UsageError(`Invalid backend URL: ${backend}`);
    }
  } else {
    throw new UsageError(`Invalid backend URL: ${backend}`);
  }
  const parts: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") parts.pop();
    else parts.push(segment);
  }
  return "/" + parts.join("/");
}

export function buildBorgstoreConfig(
  values: FlagValues,
  positionals: string[],
  env: { get(name: string): string | undefined } = Deno.env,
): BorgstoreConfig {
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  const backend = values.backend as string | undefined;
  if (!backend) throw new UsageError("--backend is required (file:///path or FILE:path)");
  const backendPath = resolveBackend(backend, Deno.cwd(), env.get("HOME"));
  let permissions: PermissionMap = null;
  if (values.permissions !== undefined) {
    try {
      permissions = parsePermissions(values.permissions as string);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  let password = (values.password as string | undefined) ?? null;
  const passwordFile = values["password-file"] as string | undefined;
  if (password !== null && passwordFile !== undefined) {
    throw new UsageError("--password and --password-file exclude each other");
  }
  if (passwordFile !== undefined) {
    try {
      password = Deno.readTextFileSync(passwordFile).split(/\r?\n/)[0];
    } catch (error) {
      const reason = fsErrorReason(error);
      throw new UsageError(`cannot read --password-file ${passwordFile}: ${reason}`);
    }
  }
  password ??= env.get("BORGSTORE_PASSWORD") ?? null;
  const username = (values.username as string | undefined) ?? env.get("BORGSTORE_USERNAME") ?? null;
  const quota = values.quota as number | undefined;
  if (quota !== undefined && quota < 0) throw new UsageError("--quota must not be negative");
  const port = (values.port as number | undefined) ?? 5618;
  if (port < 0 || port > 65535) throw new UsageError(`invalid --port ${port}`);
  return {
    host: (values.host as string | undefined) ?? "127.0.0.1",
    port,
    backendPath,
    username: username || null,
    password: password || null,
    permissions,
    quota: quota ?? null,
    stdio: values.stdio === true,
    socketActivation: values["socket-activation"] === true,
    debug: values.debug === true,
    timeouts: timeoutsFrom(values),
  };
}

export function parseBorgstoreArgs(
  argv: string[],
): { config: BorgstoreConfig | null; values: FlagValues } {
  const { values, positionals } = parseFlags(BORGSTORE_FLAGS, argv);
  if (values.help || values.version) return { config: null, values };
  return { config: buildBorgstoreConfig(values, positionals), values };
}
