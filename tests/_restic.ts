// Test helper: run the real restic client (Debian's restic) against a repository, bounded in
// time, with a fixed repository password and no local cache.

import { assertEquals } from "./_assert.ts";

export interface ResticRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ResticOptions {
  /** Extra environment variables for restic. */
  env?: Record<string, string>;
  /** Upper bound for the whole command (default 240 s). */
  timeoutMs?: number;
}

const PASSWORD = "correct horse battery staple";

/** `restic --no-cache -r <repo> <args>`; returns exit code and output. */
export async function runRestic(
  repo: string,
  args: string[],
  options: ResticOptions = {},
): Promise<ResticRun> {
  const out = await new Deno.Command("restic", {
    args: ["--no-cache", "-r", repo, ...args],
    env: { RESTIC_PASSWORD: PASSWORD, ...options.env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 240_000),
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Like runRestic, but the command must succeed; returns its stdout. */
export async function resticOk(
  repo: string,
  args: string[],
  options: ResticOptions = {},
): Promise<string> {
  const run = await runRestic(repo, args, options);
  assertEquals(run.code, 0, `restic ${args.join(" ")} failed:\n${run.stderr}`);
  return run.stdout;
}
