// stowage entry point: picks the subcommand, wires config → server → transport, handles signals.
// Exit codes: 0 success, 1 runtime or startup failure, 2 usage error.

import { renderHelp, secretsOnCommandLine, UsageError } from "./src/cli/flags.ts";
import { BORGSTORE_FLAGS, parseBorgstoreArgs } from "./src/cli/borgstore_config.ts";
import { SERVE_FLAGS } from "./src/cli/serve_config.ts";
import { parseServeArgsWithConfig, runCheckConfig } from "./src/cli/config_file.ts";
import { buildBorgstoreServer } from "./src/borgstore_server.ts";
import { serveStdioHttp1 } from "./src/transport/stdio_h1.ts";
import {
  RefusedCommand,
  RESTIC_STDIO_FLAGS,
  runResticStdio,
  runSshEntry,
  SSH_FLAGS,
} from "./src/stdio_servers.ts";
import { StartupError } from "./src/errors.ts";
import { stderrLogger } from "./src/log.ts";
import type { RunningServer } from "./src/transport/listen.ts";
import type { TlsServer } from "./src/transport/tls.ts";
import { VERSION } from "./src/version.ts";

// The HTTP listeners (node:http), the serve wiring and the user and status commands are imported
// by the subcommand that needs them: a process started per ssh connection loads neither them nor
// the node compatibility layer before its first answer.

const SERVE_USAGE = "stowage [serve] (--path DIR | --backend URL) [flags]";
const SERVE_SUMMARY =
  "Serves restic repositories (REST protocol v1/v2) from DIR, compatible with rest-server.";

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  Deno.exit(code);
}

async function serve(argv: string[]): Promise<void> {
  const { config, values, file } = await parseServeArgsWithConfig(argv);
  if (values.help) {
    console.log(renderHelp(SERVE_USAGE, SERVE_SUMMARY, SERVE_FLAGS));
    return;
  }
  if (values.version || config === null) {
    console.log(`stowage ${VERSION}`);
    return;
  }
  const log = stderrLogger({ debug: config.debug });
  if (config.noAuth) {
    log.info("WARNING: authentication is disabled (--no-auth): anyone who can reach the");
    log.info("WARNING: listener can read, write and delete backups. For trying out only.");
  }
  const { buildServer } = await import("./src/server.ts");
  const built = await buildServer(config, log, file);
  const { listenFds } = await import("./src/transport/listen_fds.ts");
  const { startListener } = await import("./src/transport/listen.ts");
  let tlsServer: TlsServer | null = null;
  let server: RunningServer;
  const inherited = listenFds();
  try {
    if (inherited.length > 0) {
      if (config.tls) throw new Error("--tls cannot be combined with systemd socket activation");
      // node:http is loaded only for sockets passed by systemd
      const { serveActivated } = await import("./src/transport/fd.ts");
      server = await serveActivated(built.handler, inherited, {
        log: (line) => log.error(line),
        timeouts: config.timeouts,
      });
    } else if (config.tls) {
      // node:http2 and node:tls are loaded only for --tls
      const { startTlsListener } = await import("./src/transport/tls.ts");
      tlsServer = await startTlsListener(built.handler, {
        address: config.listen,
        certFile: config.tlsCert,
        keyFile: config.tlsKey,
        minVersion: config.tlsMinVersion,
        log: (line) => log.error(line),
        timeouts: config.timeouts,
      });
      server = tlsServer;
    } else {
      server = await startListener(built.handler, {
        address: config.listen,
        unixSocketMode: config.unixSocketMode,
        timeouts: config.timeouts,
        log: (line) => log.error(line),
      });
    }
  } catch (error) {
    fail(`unable to listen: ${(error as Error).message}`, 1);
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.shutdown(30_000);
    await built.close();
    log.info("shutdown cleanly");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGHUP", () => {
    built.reload().catch((error) => log.error(`reload failed: ${(error as Error).message}`));
    tlsServer?.reloadCertificates().then(
      () => log.info("Reloaded TLS certificate"),
      (error) => log.error(`Could not reload TLS certificate: ${(error as Error).message}`),
    );
  });
  built.startMaintenance();
  if (inherited.length > 0) log.info(`systemd socket activation mode (${server.address})`);
  else log.info(`start server on ${server.address}`);
  if (config.tls) log.info(`TLS enabled, private key ${config.tlsKey}, pubkey ${config.tlsCert}`);
  await server.finished;
}

const BORGSTORE_USAGE = "stowage borgstore-server-rest --backend file:///path [flags]";
const BORGSTORE_SUMMARY =
  "Serves one BorgStore (Borg 2) store over REST, compatible with borgstore-server-rest.";

async function borgstoreServer(argv: string[]): Promise<void> {
  const { config, values } = parseBorgstoreArgs(argv);
  if (values.help) {
    console.log(renderHelp(BORGSTORE_USAGE, BORGSTORE_SUMMARY, BORGSTORE_FLAGS));
    return;
  }
  if (values.version || config === null) {
    console.log(`stowage ${VERSION}`);
    return;
  }
  for (const flag of secretsOnCommandLine(BORGSTORE_FLAGS, values)) {
    console.error(
      `WARNING: ${flag} on the command line is visible to other local users; ` +
        "use --password-file or BORGSTORE_PASSWORD",
    );
  }
  const log = stderrLogger({ debug: config.debug });
  const built = buildBorgstoreServer(config, log);
  if (config.stdio) {
    log.info("BorgStore REST server listening on stdin/stdout");
    await serveStdioHttp1(built.handler, { log: (line) => log.error(line) });
    await built.close();
    Deno.exit(0);
  }
  let stop: () => Promise<void>;
  if (config.socketActivation) {
    const { listenFds } = await import("./src/transport/listen_fds.ts");
    const fds = listenFds(Deno.env, { checkPid: false });
    if (fds.length === 0) {
      fail(
        "--socket-activation was requested but no sockets were passed by systemd " +
          "(LISTEN_FDS not set or 0)",
        1,
      );
    }
    if (fds.length !== 1) {
      fail(`--socket-activation expects exactly 1 socket from systemd, got ${fds.length}`, 1);
    }
    const { serveOnFd } = await import("./src/transport/fd.ts");
    const server = serveOnFd(built.handler, fds[0], {
      log: (line) => log.error(line),
      timeouts: config.timeouts,
    });
    await server.listening.catch((error) => fail(`unable to serve fd 3: ${error.message}`, 1));
    log.info(`BorgStore REST server using systemd-activated socket on ${server.address}`);
    stop = () => server.close();
  } else {
    const { startListener } = await import("./src/transport/listen.ts");
    const server = await startListener(built.handler, {
      address: config.host.includes(":")
        ? `[${config.host}]:${config.port}`
        : `${config.host}:${config.port}`,
      timeouts: config.timeouts,
      log: (line) => log.error(line),
    }).catch((error) => fail(`unable to listen: ${(error as Error).message}`, 1));
    log.info(`BorgStore REST server listening on ${server.address}`);
    stop = () => server.shutdown(30_000);
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = async () => {
      if (stopping) return;
      stopping = true;
      await stop();
      await built.close();
      log.info("shutdown cleanly");
      resolve();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
  Deno.exit(0);
}

const RESTIC_STDIO_USAGE = "stowage serve restic --stdio [flags] <path>";
const RESTIC_STDIO_SUMMARY =
  "Serves one restic repository over HTTP/2 on stdin/stdout, for restic's rclone: backend\n" +
  "(restic -o rclone.program=stowage -r rclone:<path> …).";
const SSH_USAGE = 'command="stowage ssh --root DIR [flags]",restrict ssh-ed25519 AAAA…';
const SSH_SUMMARY =
  "ssh forced command: serves the borg/borgstore or restic command the client asked for\n" +
  "(SSH_ORIGINAL_COMMAND), for repositories below the --root directories only.";

async function resticStdio(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(renderHelp(RESTIC_STDIO_USAGE, RESTIC_STDIO_SUMMARY, RESTIC_STDIO_FLAGS));
    return;
  }
  const log = stderrLogger({ debug: argv.includes("-v") || argv.includes("--verbose") });
  await runResticStdio(argv, log);
  Deno.exit(0);
}

async function sshEntry(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(renderHelp(SSH_USAGE, SSH_SUMMARY, SSH_FLAGS));
    return;
  }
  const log = stderrLogger({ debug: argv.includes("--debug") });
  try {
    await runSshEntry(argv, log);
  } catch (error) {
    if (error instanceof RefusedCommand) fail(`stowage ssh: refused: ${error.message}`, 1);
    throw error;
  }
  Deno.exit(0);
}

const TOPICS: Record<string, () => string> = {
  serve: () => renderHelp(SERVE_USAGE, SERVE_SUMMARY, SERVE_FLAGS),
  "borgstore-server-rest": () => renderHelp(BORGSTORE_USAGE, BORGSTORE_SUMMARY, BORGSTORE_FLAGS),
  "serve-restic": () => renderHelp(RESTIC_STDIO_USAGE, RESTIC_STDIO_SUMMARY, RESTIC_STDIO_FLAGS),
  ssh: () => renderHelp(SSH_USAGE, SSH_SUMMARY, SSH_FLAGS),
};

function help(topic: string | undefined): void {
  if (topic && TOPICS[topic]) {
    console.log(TOPICS[topic]());
    return;
  }
  console.log(`stowage ${VERSION}: backup storage for restic and Borg 2

Usage:
  stowage [serve] --path DIR [flags]          restic repositories and borg stores over HTTP(S)
  stowage borgstore-server-rest [flags]       one borg store, drop-in for borgstore-server-rest
  stowage serve restic --stdio <path>         restic's rclone: backend over stdin/stdout
  stowage ssh --root DIR [flags]              ssh forced command for borg and restic
  stowage check-config FILE                   validate a --config file without starting
  stowage user add|passwd|remove|list …       manage the htpasswd file (bcrypt)
  stowage status [--json] [--max-age 2d]      repositories, sizes, newest backups, quotas
  stowage help [serve|borgstore-server-rest|serve-restic|ssh]

Exit codes: 0 success, 1 runtime or startup failure, 2 usage error.`);
}

function isBorgstoreExecutable(): boolean {
  const name = Deno.execPath().split(/[\\/]/).pop() ?? "";
  return name === "borgstore-server-rest" || name === "borgstore-server-rest.exe";
}

async function main(args: string[]): Promise<void> {
  if (isBorgstoreExecutable()) return await borgstoreServer(args);
  const [command, ...rest] = args;
  switch (command) {
    case "serve":
      if (rest[0] === "restic") return await resticStdio(rest.slice(1));
      return await serve(rest);
    case "ssh":
      return await sshEntry(rest);
    case "check-config":
      return Deno.exit(await runCheckConfig(rest));
    case "user":
      return Deno.exit(await (await import("./src/cli/user_command.ts")).runUserCommand(rest));
    case "status":
      return Deno.exit(await (await import("./src/cli/status_command.ts")).runStatusCommand(rest));
    case "help":
    case "--help":
    case "-h":
      return help(rest[0]);
    case "borgstore-server-rest":
      return await borgstoreServer(rest);
    case "--version":
    case "-v":
    case "version":
      console.log(`stowage ${VERSION}`);
      return;
    default:
      return await serve(args);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`stowage: ${error.message} (see --help)`);
      Deno.exit(2);
    }
    if (error instanceof StartupError) fail(error.message, 1);
    fail(error instanceof Error ? error.message : String(error), 1);
  }
}
