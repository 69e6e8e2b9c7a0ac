// `stowage serve`: wires config → server → listener (TCP, unix socket, TLS or systemd sockets)
// and the signals (SIGINT/SIGTERM shut down, SIGHUP reloads). main.ts imports this module for the
// serve command only; its static imports are exactly what a TCP server needs before its first
// answer (tests/startup_graph_test.ts), node:http and node:tls are imported in their branches.

import { StartupError } from "../errors.ts";
import { stderrLogger } from "../log.ts";
import { buildServer } from "../server.ts";
import { listenFds } from "../transport/listen_fds.ts";
import { type RunningServer, startListener } from "../transport/listen.ts";
import type { TlsServer } from "../transport/tls.ts";
import { VERSION } from "../version.ts";
import { parseServeArgsWithConfig } from "./config_file.ts";
import { renderHelp } from "./flags.ts";
import { SERVE_FLAGS } from "./serve_config.ts";

const SERVE_USAGE = "stowage [serve] (--path DIR | --backend URL) [flags]";
const SERVE_SUMMARY =
  "Serves restic repositories (REST protocol v1/v2) from DIR, compatible with rest-server.";

export function serveHelp(): string {
  return renderHelp(SERVE_USAGE, SERVE_SUMMARY, SERVE_FLAGS);
}

/** Runs the server until a signal stops it; returns at once for --help and --version. */
export async function runServe(argv: string[]): Promise<void> {
  const { config, values, file } = await parseServeArgsWithConfig(argv);
  if (values.help) {
    console.log(serveHelp());
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
  const built = await buildServer(config, log, file);
  let tlsServer: TlsServer | null = null;
  let server: RunningServer;
  const inherited = listenFds();
  try {
    if (inherited.length > 0) {
      if (config.tls) throw new Error("--tls cannot be combined with systemd socket activation");
      // node:http is loaded only for sockets passed by systemd
      const { serveActivated } = await import("../transport/fd.ts");
      server = await serveActivated(built.handler, inherited, {
        log: (line) => log.error(line),
        timeouts: config.timeouts,
      });
    } else if (config.tls) {
      // node:http2 and node:tls are loaded only for --tls
      const { startTlsListener } = await import("../transport/tls.ts");
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
    throw new StartupError(`unable to listen: ${(error as Error).message}`);
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
