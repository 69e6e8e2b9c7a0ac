// `stowage borgstore-server-rest` (also the behaviour of an executable named
// borgstore-server-rest): one BorgStore over stdin/stdout (--stdio, started by ssh for every
// connection), a systemd socket or a TCP listener, with borgstore-server-rest's flags and lines.
// main.ts imports this module for that command only.

import { buildBorgstoreServer } from "../borgstore_server.ts";
import { StartupError } from "../errors.ts";
import { stderrLogger } from "../log.ts";
import { serveStdioHttp1 } from "../transport/stdio_h1.ts";
import { VERSION } from "../version.ts";
import { BORGSTORE_FLAGS, parseBorgstoreArgs } from "./borgstore_config.ts";
import { renderHelp, secretsOnCommandLine } from "./flags.ts";

const BORGSTORE_USAGE = "stowage borgstore-server-rest --backend file:///path [flags]";
const BORGSTORE_SUMMARY =
  "Serves one BorgStore (Borg 2) store over REST, compatible with borgstore-server-rest.";

export function borgstoreHelp(): string {
  return renderHelp(BORGSTORE_USAGE, BORGSTORE_SUMMARY, BORGSTORE_FLAGS);
}

/** Serves until stdin ends (--stdio) or a signal stops it, then exits the process. */
export async function runBorgstoreServer(argv: string[]): Promise<void> {
  const { config, values } = parseBorgstoreArgs(argv);
  if (values.help) {
    console.log(borgstoreHelp());
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
    const { listenFds } = await import("../transport/listen_fds.ts");
    const fds = listenFds(Deno.env, { checkPid: false });
    if (fds.length === 0) {
      throw new StartupError(
        "--socket-activation was requested but no sockets were passed by systemd " +
          "(LISTEN_FDS not set or 0)",
      );
    }
    if (fds.length !== 1) {
      throw new StartupError(
        `--socket-activation expects exactly 1 socket from systemd, got ${fds.length}`,
      );
    }
    const { serveOnFd } = await import("../transport/fd.ts");
    const server = serveOnFd(built.handler, fds[0], {
      log: (line) => log.error(line),
      timeouts: config.timeouts,
    });
    await server.listening.catch((error) => {
      throw new StartupError(`unable to serve fd 3: ${error.message}`);
    });
    log.info(`BorgStore REST server using systemd-activated socket on ${server.address}`);
    stop = () => server.close();
  } else {
    const { startListener } = await import("../transport/listen.ts");
    const server = await startListener(built.handler, {
      address: config.host.includes(":")
        ? `[${config.host}]:${config.port}`
        : `${config.host}:${config.port}`,
      timeouts: config.timeouts,
      log: (line) => log.error(line),
    }).catch((error) => {
      throw new StartupError(`unable to listen: ${(error as Error).message}`);
    });
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
