// `deno task reliability [--full] [--seed N] [--only part,…]`: the reliability and security
// suite. Parts (scripts/reliability/*.ts): crash (SIGKILL torture of concurrent restic and borg
// uploads), crash-restic (real restic backups with the server killed), badinput (malformed
// requests over raw sockets and fetch), fuzz (seeded in-process request fuzzer), authz
// (authorization matrix of both protocols), concurrency (quota, identical uploads, move/delete
// races), slow (slowloris, stalled downloads, disconnects), soak (mixed traffic over time).
// stdout carries one figure per line (`name: value`); progress and details go to stderr. Exits 1
// when a figure breaks its rule (a zero-figure that is not 0, a bound exceeded), 2 on usage errors.

import { authz } from "./reliability/authz.ts";
import { badInput } from "./reliability/badinput.ts";
import {
  describeRule,
  type Figure,
  type Part,
  type PartContext,
  passes,
  type Scale,
  ZERO,
} from "./reliability/common.ts";
import { concurrency } from "./reliability/concurrency.ts";
import { crashRestic, crashTorture } from "./reliability/crash.ts";
import { fuzz } from "./reliability/fuzz.ts";
import { slowClients } from "./reliability/slow.ts";
import { soak } from "./reliability/soak.ts";

export const PARTS: Record<string, Part> = {
  crash: crashTorture,
  "crash-restic": crashRestic,
  badinput: badInput,
  fuzz,
  authz,
  concurrency,
  slow: slowClients,
  soak,
};

const USAGE = `usage: deno task reliability [--full] [--seed N] [--only ${
  Object.keys(PARTS).join(",")
}] [--soak-seconds N]

  --full            full sizes (crash 1000 kills, fuzz 60 000 requests, soak 600 s, 500 MiB
                    stalled downloads); default: reduced sizes for CI (about 4 minutes)
  --seed N          seed of every random choice (default: from the clock; printed as fuzz.seed)
  --only P,…        run only these parts
  --soak-seconds N  soak duration (default 45, with --full 600)`;

export interface RunOptions {
  scale: Scale;
  seed: number;
  only: string[];
  soakSeconds?: number;
}

export function parseArgs(args: string[]): RunOptions | null {
  let scale: Scale = "reduced";
  let seed = Date.now() % 1_000_000_007;
  let only = Object.keys(PARTS);
  let soakSeconds: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const next = args[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === "--full") scale = "full";
    else if (arg === "--seed") {
      const text = value();
      if (!/^\d+$/.test(text)) throw new Error(`--seed expects a non-negative integer`);
      seed = Number(text);
    } else if (arg.startsWith("--seed=")) {
      seed = Number(arg.slice("--seed=".length));
      if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`invalid ${arg}`);
    } else if (arg === "--only" || arg.startsWith("--only=")) {
      const text = arg === "--only" ? value() : arg.slice("--only=".length);
      only = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
      for (const part of only) {
        if (!(part in PARTS)) throw new Error(`unknown part "${part}"`);
      }
    } else if (arg === "--soak-seconds") {
      const text = value();
      if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error("--soak-seconds expects ≥ 1");
      soakSeconds = Number(text);
    } else if (arg === "--help" || arg === "-h") return null;
    else throw new Error(`unknown argument "${arg}"`);
  }
  return { scale, seed, only, soakSeconds };
}

/** The temporary directory of the part that runs (removed on SIGINT/SIGTERM). */
let current: string | null = null;

/** Runs the parts in order; `emit` receives each figure as soon as it is known. */
export async function runParts(
  options: RunOptions,
  emit: (figure: Figure) => void,
  log: (line: string) => void,
): Promise<Figure[]> {
  const all: Figure[] = [];
  for (const name of options.only) {
    const tmp = await Deno.makeTempDir({ prefix: `stowage-reliability-${name}-` });
    current = tmp;
    const ctx: PartContext = {
      scale: options.scale,
      seed: options.seed,
      tmp,
      log,
      soakSeconds: options.soakSeconds,
    };
    const started = performance.now();
    log(`== ${name}`);
    try {
      for (const figure of await PARTS[name](ctx)) {
        all.push(figure);
        emit(figure);
      }
    } catch (error) {
      log(`${name}: aborted: ${error instanceof Error ? error.stack : error}`);
      const figure = { name: `${name}.aborted`, value: 1, rule: ZERO };
      all.push(figure);
      emit(figure);
    } finally {
      current = null;
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
    log(`== ${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return all;
}

async function main(): Promise<number> {
  let options: RunOptions | null;
  try {
    options = parseArgs(Deno.args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === null) {
    console.log(USAGE);
    return 0;
  }
  const log = (line: string) => console.error(line);
  const interrupted = () => {
    log("interrupted: removing the temporary directory");
    if (current !== null) Deno.removeSync(current, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  log(`reliability: scale ${options.scale}, seed ${options.seed}`);
  const figures = await runParts(options, (f) => console.log(`${f.name}: ${f.value}`), log);
  const failed = figures.filter((f) => !passes(f));
  for (const f of failed) log(`FAILED ${f.name}: ${f.value} (${describeRule(f.rule)})`);
  log(`reliability: ${figures.length} figures, ${failed.length} failed (seed ${options.seed})`);
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
