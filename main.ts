// stowage entry point: picks the subcommand and hands it the rest of the command line, turns the
// errors that escape it into a message and an exit code.
// Exit codes: 0 success, 1 runtime or startup failure, 2 usage error.
//
// Each subcommand lives in its own module under src/cli/, imported here when it is chosen, so a
// process loads only its own command's code before its first answer: a restic server loads no
// BorgStore code, a process started per ssh connection neither the TCP server nor the node
// compatibility layer (tests/startup_graph_test.ts).

import { UsageError } from "./src/cli/flags.ts";
import { StartupError } from "./src/errors.ts";
import { VERSION } from "./src/version.ts";

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  Deno.exit(code);
}

const TOPICS: Record<string, () => Promise<string>> = {
  serve: async () => (await import("./src/cli/serve_command.ts")).serveHelp(),
  "borgstore-server-rest": async () =>
    (await import("./src/cli/borgstore_command.ts")).borgstoreHelp(),
  "serve-restic": async () => (await import("./src/cli/stdio_commands.ts")).resticStdioHelp(),
  ssh: async () => (await import("./src/cli/stdio_commands.ts")).sshHelp(),
};

async function help(topic: string | undefined): Promise<void> {
  if (topic && Object.hasOwn(TOPICS, topic)) {
    console.log(await TOPICS[topic]());
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

async function borgstoreServer(args: string[]): Promise<void> {
  return await (await import("./src/cli/borgstore_command.ts")).runBorgstoreServer(args);
}

async function serve(args: string[]): Promise<void> {
  return await (await import("./src/cli/serve_command.ts")).runServe(args);
}

async function main(args: string[]): Promise<void> {
  if (isBorgstoreExecutable()) return await borgstoreServer(args);
  const [command, ...rest] = args;
  switch (command) {
    case "serve":
      if (rest[0] === "restic") {
        const { runResticStdioCommand } = await import("./src/cli/stdio_commands.ts");
        return await runResticStdioCommand(rest.slice(1));
      }
      return await serve(rest);
    case "ssh":
      return await (await import("./src/cli/stdio_commands.ts")).runSshCommand(rest);
    case "check-config":
      return Deno.exit(await (await import("./src/cli/config_file.ts")).runCheckConfig(rest));
    case "user":
      return Deno.exit(await (await import("./src/cli/user_command.ts")).runUserCommand(rest));
    case "status":
      return Deno.exit(await (await import("./src/cli/status_command.ts")).runStatusCommand(rest));
    case "help":
    case "--help":
    case "-h":
      return await help(rest[0]);
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
