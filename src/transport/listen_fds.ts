// systemd socket activation, first half: which inherited fds are listening sockets
// (LISTEN_FDS/LISTEN_PID, as sd_listen_fds reads them). No node: import: every `serve` asks this
// before it listens, and only a process that was passed sockets loads fd.ts and node:http.

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** Environment access as Deno.env offers it. */
export interface EnvAccess {
  get(key: string): string | undefined;
  delete(key: string): void;
}

export interface ListenFdsOptions {
  /** Require LISTEN_PID (when set) to be our pid, as sd_listen_fds does (default true). */
  checkPid?: boolean;
}

/**
 * The listening fds systemd passed: [3, 3 + LISTEN_FDS). Empty when LISTEN_FDS is unset, not a
 * positive number, or LISTEN_PID is set to another process. LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are removed from the environment so child processes do not inherit them.
 */
export function listenFds(env: EnvAccess = Deno.env, options: ListenFdsOptions = {}): number[] {
  const fdsText = env.get("LISTEN_FDS");
  const pidText = env.get("LISTEN_PID");
  for (const key of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) env.delete(key);
  if (fdsText === undefined || !/^\d+$/.test(fdsText.trim())) return [];
  if ((options.checkPid ?? true) && pidText !== undefined && pidText.trim() !== "") {
    if (!/^\d+$/.test(pidText.trim()) || Number(pidText) !== Deno.pid) return [];
  }
  const count = Number(fdsText);
  if (!Number.isSafeInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
}
