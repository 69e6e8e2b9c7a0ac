// Wiring for the `borgstore-server-rest` personality: one store from --backend, the single-user
// Basic auth, permissions and quota.hid, served over TCP, a systemd-activated socket or stdio,
// with the reference's log lines on stderr.

import type { BorgstoreConfig } from "./cli/borgstore_config.ts";
import { noAuth, singleUserAuth } from "./http/auth.ts";
import { forTransport } from "./http/held_body.ts";
import type { Handler, RequestInfo } from "./http/types.ts";
import { escapeLogText, type Logger } from "./log.ts";
import { BorgQuota } from "./policy/borg_quota.ts";
import { createBorgstoreServerHandler } from "./protocol/borgstore.ts";
import { FsProvider } from "./storage/fs.ts";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function logTime(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()} ${
    p(date.getHours())
  }:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}

/** The reference's access line: `<client> - <user> [date] "<request line>" <status> -`. */
export function borgstoreAccessLine(
  request: Request,
  info: RequestInfo,
  user: string | null,
  status: number,
): string {
  const url = new URL(request.url);
  const target = url.pathname + url.search;
  return `${info.remoteAddr} - ${user ?? "-"} [${logTime(new Date())}] "${
    escapeLogText(`${request.method} ${target} HTTP/1.1`)
  }" ${status} -`;
}

export interface BuiltBorgstoreServer {
  handler: Handler;
  close(): Promise<void>;
}

export function buildBorgstoreServer(config: BorgstoreConfig, log: Logger): BuiltBorgstoreServer {
  const provider = new FsProvider(config.backendPath, { warn: (line) => log.error(line) });
  const quota = new BorgQuota(config.backendPath, config.quota);
  const authenticator = config.username && config.password
    ? singleUserAuth(config.username, config.password)
    : noAuth();
  const protocol = createBorgstoreServerHandler({
    store: {
      provider,
      permissions: config.permissions,
      quota,
      log: (message) => log.error(message),
    },
    authenticate: (request) => authenticator.authenticate(request),
  });
  const handler: Handler = async (request, info) => {
    const response = forTransport(await protocol(request), info);
    log.info(borgstoreAccessLine(request, info, config.username, response.status));
    return response;
  };
  return { handler, close: () => quota.close() };
}
