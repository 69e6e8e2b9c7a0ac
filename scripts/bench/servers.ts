// Starting and stopping the benchmarked servers: stowage (`deno run -A main.ts serve`, started
// with the running Deno binary), the reference `rclone serve restic` and the ceiling server
// (ceiling_server.ts, the least a server can do for small requests), each on a loopback port,
// ready once it prints its listening line on stderr. stderr is drained for the process' lifetime
// (the last lines are kept for error messages). stowage runs with the V8 flags of the tasks and
// the executables.

import { V8_FLAGS } from "../compile.ts";

export type ServerKind = "stowage" | "reference" | "ceiling";

export interface RunningServer {
  kind: ServerKind;
  pid: number;
  port: number;
  /** http://127.0.0.1:<port> (no trailing slash). */
  base: string;
  stop(): Promise<void>;
  /** The last stderr lines, for error messages. */
  tail(): string;
}

/** The project root (scripts/bench/ is two levels below). */
export const PROJECT_ROOT = new URL("../../", import.meta.url).pathname;

const STOWAGE_READY = /start server on 127\.0\.0\.1:(\d+)/;
const RCLONE_READY = /Serving restic REST API on https?:\/\/127\.0\.0\.1:(\d+)/;

export function stowageArgs(dataDir: string, listen: string): string[] {
  return [
    "run",
    "-A",
    V8_FLAGS,
    "main.ts",
    "serve",
    "--path",
    dataDir,
    "--no-auth",
    "--listen",
    listen,
  ];
}

/** stowage as an ssh forced command runs it: one BorgStore store spoken over stdin/stdout. */
export function stowageStdioArgs(dataDir: string): string[] {
  return [
    "run",
    "-A",
    V8_FLAGS,
    "main.ts",
    "borgstore-server-rest",
    "--stdio",
    "--backend",
    `file://${dataDir}`,
  ];
}

export function ceilingArgs(listen: string): string[] {
  return ["run", "-A", V8_FLAGS, "scripts/bench/ceiling_server.ts", "--listen", listen];
}

export function rcloneArgs(dataDir: string, listen: string): string[] {
  return ["serve", "restic", "--addr", listen, "--config", "/dev/null", dataDir];
}

/**
 * The order in which the servers take their turn in run `run` (1-based): A B, B A, A B, …, so
 * that neither always runs right after the other's clean-up (see warm.ts for why that matters).
 */
export function serverOrder<T>(kinds: readonly T[], run: number): T[] {
  return run % 2 === 1 ? [...kinds] : [...kinds].reverse();
}

/** Whether `rclone` can be started (and its version line). */
export async function rcloneVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command("rclone", { args: ["version"], stdout: "piped" }).output();
    if (!out.success) return null;
    return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
  } catch {
    return null;
  }
}

/** A port that was free a moment ago (for spawns that must know the port up front). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export function spawnServer(kind: ServerKind, dataDir: string, listen: string): Deno.ChildProcess {
  const [command, args] = kind === "stowage"
    ? [Deno.execPath(), stowageArgs(dataDir, listen)]
    : kind === "ceiling"
    ? [Deno.execPath(), ceilingArgs(listen)]
    : ["rclone", rcloneArgs(dataDir, listen)];
  return new Deno.Command(command, {
    args,
    cwd: PROJECT_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: Deno.ChildProcess, graceMs = 10_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      resolve();
    }, graceMs);
  });
  await Promise.race([child.status.then(() => {}), killed]);
  clearTimeout(timer);
  await child.status;
}

/** Starts a server on 127.0.0.1:0 and waits for its listening line (30 s at most). */
export async function startServer(kind: ServerKind, dataDir: string): Promise<RunningServer> {
  const child = spawnServer(kind, dataDir, "127.0.0.1:0");
  const lines: string[] = [];
  const tail = () => lines.slice(-20).join("\n");
  let resolvePort: (port: number) => void = () => {};
  const portFound = new Promise<number>((resolve) => resolvePort = resolve);
  const ready = kind === "reference" ? RCLONE_READY : STOWAGE_READY;
  const drain = (async () => {
    const decoder = new TextDecoderStream();
    let pending = "";
    for await (const text of child.stderr.pipeThrough(decoder)) {
      pending += text;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        lines.push(line);
        if (lines.length > 200) lines.splice(0, 100);
        const match = ready.exec(line);
        if (match) resolvePort(Number(match[1]));
      }
    }
  })().catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${kind} did not start within 30 s`)), 30_000);
  });
  const exited = child.status.then((status): never => {
    throw new Error(`${kind} exited during startup (code ${status.code})`);
  });
  let port: number;
  try {
    port = await Promise.race([portFound, timeout, exited]);
  } catch (error) {
    await stopChild(child, 1000);
    await drain;
    throw new Error(`${(error as Error).message}\n${tail()}`);
  } finally {
    clearTimeout(timer);
  }
  exited.catch(() => {});
  return {
    kind,
    pid: child.pid,
    port,
    base: `http://127.0.0.1:${port}`,
    tail,
    stop: async () => {
      await stopChild(child);
      await drain;
    },
  };
}
