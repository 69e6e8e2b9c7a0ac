// stowage entry point: picks the subcommand, wires config → server → transport, handles signals.
// Exit codes: 0 success, 1 runtime or startup failure, 2 usage error.

import { renderHelp, UsageError } from "./src/cli/flags.ts";
import { parseServeArgs, SERVE_FLAGS } from "./src/cli/serve_config.ts";
import { stderrLogger } from "./src/log.ts";
import { buildServer, StartupError } from "./src/server.ts";
import { startListener } from "./src/transport/listen.ts";
import { VERSION } from "./src/version.ts";

const SERVE_USAGE = "stowage [serve] --path DIR [flags]";
const SERVE_SUMMARY =
  "Serves restic repositories (REST protocol v1/v2) from DIR, compatible with rest-server.";

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  Deno.exit(code);
}

async function serve(argv: string[]): Promise<void> {
  const { config, values } = parseServeArgs(argv);
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
  const built = await buildServer(config, log);
  const tls = config.tls
    ? {
      cert: await Deno.readTextFile(config.tlsCert),
      key: await Deno.readTextFile(config.tlsKey),
    }
    : undefined;
  const server = await startListener(built.handler, {
    address: config.listen,
    unixSocketMode: config.unixSocketMode,
    tls,
  }).catch((error) => fail(`unable to listen: ${(error as Error).message}`, 1));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.shutdown(30_000);
    log.info("shutdown cleanly");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGHUP", () => {
    built.reload().catch((error) => log.error(`reload failed: ${(error as Error).message}`));
  });
  log.info(`start server on ${server.address}`);
  if (config.tls) log.info(`TLS enabled, private key ${config.tlsKey}, pubkey ${config.tlsCert}`);
  await server.finished;
}

async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  switch (command) {
    case "serve":
      return await serve(rest);
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
