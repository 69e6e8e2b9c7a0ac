// The two commands an ssh or rclone-style client starts per connection, speaking HTTP on
// stdin/stdout: `stowage serve restic --stdio <path>` (restic's rclone: backend) and
// `stowage ssh --root DIR` (the forced command). main.ts imports this module for them only.

import { StartupError } from "../errors.ts";
import { stderrLogger } from "../log.ts";
import {
  RefusedCommand,
  RESTIC_STDIO_FLAGS,
  runResticStdio,
  runSshEntry,
  SSH_FLAGS,
} from "../stdio_servers.ts";
import { renderHelp } from "./flags.ts";

const RESTIC_STDIO_USAGE = "stowage serve restic --stdio [flags] <path>";
const RESTIC_STDIO_SUMMARY =
  "Serves one restic repository over HTTP/2 on stdin/stdout, for restic's rclone: backend\n" +
  "(restic -o rclone.program=stowage -r rclone:<path> …).";
const SSH_USAGE = 'command="stowage ssh --root DIR [flags]",restrict ssh-ed25519 AAAA…';
const SSH_SUMMARY =
  "ssh forced command: serves the borg/borgstore or restic command the client asked for\n" +
  "(SSH_ORIGINAL_COMMAND), for repositories below the --root directories only.";

export function resticStdioHelp(): string {
  return renderHelp(RESTIC_STDIO_USAGE, RESTIC_STDIO_SUMMARY, RESTIC_STDIO_FLAGS);
}

export function sshHelp(): string {
  return renderHelp(SSH_USAGE, SSH_SUMMARY, SSH_FLAGS);
}

/** Serves one restic repository until stdin ends, then exits the process. */
export async function runResticStdioCommand(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(resticStdioHelp());
    return;
  }
  const log = stderrLogger({ debug: argv.includes("-v") || argv.includes("--verbose") });
  await runResticStdio(argv, log);
  Deno.exit(0);
}

/** Serves the command in SSH_ORIGINAL_COMMAND until stdin ends, then exits the process. */
export async function runSshCommand(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(sshHelp());
    return;
  }
  const log = stderrLogger({ debug: argv.includes("--debug") });
  try {
    await runSshEntry(argv, log);
  } catch (error) {
    if (error instanceof RefusedCommand) {
      throw new StartupError(`stowage ssh: refused: ${error.message}`);
    }
    throw error;
  }
  Deno.exit(0);
}
