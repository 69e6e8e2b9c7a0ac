// Wiring for the stdio entries: `stowage serve restic --stdio <path>` (restic's rclone: backend,
// HTTP/2 on stdin/stdout) and `stowage ssh` (the authorized_keys forced command that picks the
// borgstore or restic server for the command line the client sent). Logs go to stderr only.

import { buildBorgstoreServer } from "./borgstore_server.ts";
import type { BorgstoreConfig } from "./cli/borgstore_config.ts";
import { type FlagSpec, parseFlags, UsageError } from "./cli/flags.ts";
import {
  clientPath,
  parseSshCommand,
  realRoots,
  RefusedCommand,
  resolveInsideRoots,
} from "./cli/ssh_command.ts";
import { noAuth } from "./http/auth.ts";
import { forTransport } from "./http/held_body.ts";
import type { Handler } from "./http/types.ts";
import type { Logger } from "./log.ts";
import { type AccessPolicy, flagPolicy, type Protocol } from "./policy/access.ts";
import { loadConfigFile } from "./cli/config_file.ts";
import { grantPolicy } from "./policy/grants.ts";
import {
  BORG_MODES,
  parsePermissions,
  type PermissionMap,
  RESTIC_MODES,
} from "./policy/permissions.ts";
import { measureTree, QuotaTracker } from "./policy/quota.ts";
import { createResticHandler } from "./protocol/restic.ts";
import { FsProvider } from "./storage/fs.ts";
import { serveStdioHttp1 } from "./transport/stdio_h1.ts";
import { NO_TIMEOUTS } from "./transport/timeouts.ts";

export const RESTIC_STDIO_FLAGS: FlagSpec[] = [
  { name: "stdio", type: "boolean", help: "speak HTTP/2 on stdin/stdout (required)" },
  { name: "append-only", type: "boolean", help: "allow only appends: no deletes except locks" },
  { name: "no-verify-upload", type: "boolean", help: "do not verify the SHA-256 of uploads" },
  { name: "b2-hard-delete", type: "boolean", help: "accepted for rclone compatibility; ignored" },
  {
    name: "bwlimit",
    type: "string",
    value: "RATE",
    help: "accepted for rclone compatibility; ignored",
  },
  { name: "verbose", short: "v", type: "boolean", help: "log every request on stderr" },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
];

export const SSH_FLAGS: FlagSpec[] = [
  {
    name: "root",
    type: "list",
    value: "DIR",
    help: "directory the key may use repositories below (repeatable; required)",
  },
  {
    name: "permissions",
    type: "string",
    value: "MODE",
    help: "borg stores: a borgbackup-* shortcut, all|no-delete|write-only|read-only, or JSON; " +
      "restic repositories: all|append-only|no-delete|read-only or JSON",
  },
  {
    name: "append-only",
    type: "boolean",
    help: "restic: no deletes except locks; borg stores: no-delete mode unless --permissions",
  },
  {
    name: "quota",
    type: "integer",
    value: "BYTES",
    help: "size limit per repository (borg stores: quota.hid)",
  },
  {
    name: "config",
    type: "string",
    value: "FILE",
    help: "apply the grants of --user from this config file; its path is the root",
  },
  {
    name: "user",
    type: "string",
    value: "NAME",
    help: "the user this key belongs to (with --config)",
  },
  { name: "debug", type: "boolean", help: "log every request on stderr" },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
];

/** A restic server for one repository at the URL root, without authentication (stdio). */
export function resticRootHandler(
  path: string,
  options: {
    appendOnly: boolean;
    verifyUpload: boolean;
    log: Logger;
    permissions?: PermissionMap;
    quota?: QuotaTracker | null;
  },
): Handler {
  const authenticator = noAuth();
  const policy: AccessPolicy = options.permissions === undefined
    ? flagPolicy({ appendOnly: options.appendOnly, privateRepos: false, authEnabled: false })
    : { resolve: () => ({ permissions: options.permissions ?? null }) };
  const restic = createResticHandler({
    provider: new FsProvider(path, { warn: (line) => options.log.error(line) }),
    authenticate: (request) => authenticator.authenticate(request),
    policy,
    verifyUpload: options.verifyUpload,
    quota: options.quota ?? null,
    metrics: null,
    log: options.log,
  });
  return async (request, info) => {
    const response = forTransport(await restic(request), info);
    options.log.debug(`${request.method} ${new URL(request.url).pathname} ${response.status}`);
    return response;
  };
}

function expandHome(path: string): string {
  const home = Deno.env.get("HOME") ?? "/";
  if (path === "~" || path.startsWith("~/")) return home + path.slice(1);
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** `stowage serve restic --stdio [rclone flags] <path>`; resolves when stdin ends. */
export async function runResticStdio(argv: string[], log: Logger): Promise<void> {
  const { values, positionals } = parseFlags(RESTIC_STDIO_FLAGS, argv);
  if (!values.stdio) throw new UsageError("serve restic needs --stdio (HTTP/2 on stdin/stdout)");
  if (positionals.length === 0) throw new UsageError("serve restic needs a repository path");
  const path = expandHome(positionals[positionals.length - 1].replace(/^local:/, ""));
  const handler = resticRootHandler(path, {
    appendOnly: values["append-only"] === true,
    verifyUpload: values["no-verify-upload"] !== true,
    log,
  });
  await (await import("./transport/stdio_h2.ts")).serveStdioHttp2(handler, {
    log: (line) => log.error(line),
  });
}

function borgPermissions(values: Record<string, unknown>): PermissionMap {
  if (typeof values.permissions === "string") {
    try {
      return parsePermissions(values.permissions);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  return values["append-only"] === true ? BORG_MODES["no-delete"] : null;
}

/** The forced command's policy for a restic repository; borg-only modes are refused. */
function resticPermissions(values: Record<string, unknown>): PermissionMap {
  const mode = values.permissions as string | undefined;
  if (mode === undefined) {
    return values["append-only"] === true ? RESTIC_MODES["append-only"] : null;
  }
  if (mode in RESTIC_MODES) {
    const map = RESTIC_MODES[mode];
    return values["append-only"] === true && map === null ? RESTIC_MODES["append-only"] : map;
  }
  if (mode.trim().startsWith("{")) return parsePermissions(mode);
  throw new RefusedCommand(
    `--permissions ${mode} has no meaning for restic repositories (use ${
      Object.keys(RESTIC_MODES).join(", ")
    } or a JSON map)`,
  );
}

/** A quota for one restic repository, measured from what it holds now. */
async function resticQuota(path: string, limit: number | undefined): Promise<QuotaTracker | null> {
  if (limit === undefined) return null;
  const usage = await measureTree(path).catch(() => 0);
  return new QuotaTracker(limit, usage);
}

/** `stowage ssh --root DIR …`: serves what SSH_ORIGINAL_COMMAND asks for, inside the roots. */
/**
 * The grants of `user` in a config file, for one repository below its `path` (the same grants
 * `stowage serve --config` applies over HTTP). Refuses a repository the user has no grant for.
 */
async function grantFor(
  configPath: string,
  user: string,
  repoPath: string,
  protocol: Protocol,
): Promise<PermissionMap> {
  const file = await loadConfigFile(configPath);
  const root = await Deno.realPath(String(file.settings.path ?? "")).catch(() => {
    throw new UsageError(`${configPath}: "path" must name an existing data directory`);
  });
  const segments = repoPath.slice(root.length + 1).split("/");
  const policy = grantPolicy(file.grants, {
    appendOnly: file.settings["append-only"] === true,
    privateRepos: file.settings["private-repos"] === true,
    authEnabled: true,
  });
  const access = policy.resolve(user, segments, protocol);
  if (access === null) throw new RefusedCommand(`no grant for ${user} on ${segments.join("/")}`);
  return access.permissions;
}

export async function runSshEntry(argv: string[], log: Logger): Promise<void> {
  const { values, positionals } = parseFlags(SSH_FLAGS, argv);
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  const configPath = values.config as string | undefined;
  const user = values.user as string | undefined;
  if ((configPath === undefined) !== (user === undefined)) {
    throw new UsageError("--config and --user go together");
  }
  if (configPath !== undefined && (values.permissions !== undefined || values.root !== undefined)) {
    throw new UsageError("with --config the grants decide: no --root or --permissions");
  }
  const rootList = configPath === undefined
    ? (values.root as string[] | undefined) ?? []
    : [String((await loadConfigFile(configPath)).settings.path ?? "")];
  const roots = await realRoots(rootList);
  const command = Deno.env.get("SSH_ORIGINAL_COMMAND");
  const request = parseSshCommand(command);
  const home = Deno.env.get("HOME") ?? Deno.cwd();
  const path = await resolveInsideRoots(clientPath(request.path, home), roots);
  const protocol: Protocol = request.protocol === "restic" ? "restic" : "borg";
  const granted = configPath === undefined
    ? undefined
    : await grantFor(configPath, user!, path, protocol);
  const permissions = granted !== undefined ? granted : borgPermissions(values);
  if (request.protocol === "restic") {
    const handler = resticRootHandler(path, {
      appendOnly: false,
      verifyUpload: true,
      log,
      permissions: granted !== undefined ? granted : resticPermissions(values),
      quota: await resticQuota(path, values.quota as number | undefined),
    });
    await (await import("./transport/stdio_h2.ts")).serveStdioHttp2(handler, {
      log: (line) => log.error(line),
    });
    return;
  }
  const config: BorgstoreConfig = {
    host: "127.0.0.1",
    port: 0,
    backendPath: path,
    username: null,
    password: null,
    permissions,
    quota: (values.quota as number | undefined) ?? null,
    stdio: true,
    socketActivation: false,
    debug: values.debug === true,
    timeouts: NO_TIMEOUTS, // stdio: ssh owns the connection
  };
  const built = buildBorgstoreServer(config, log);
  log.info("BorgStore REST server listening on stdin/stdout");
  await serveStdioHttp1(built.handler, { log: (line) => log.error(line) });
  await built.close();
}

export { RefusedCommand };
