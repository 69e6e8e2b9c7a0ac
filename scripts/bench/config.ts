// Bench command line and sizes: `--runs N`, `--quick` (scaled-down sizes), `--only a,b`,
// `--no-reference`, `--no-ceiling`, `--dir DIR`, `--help`. Full sizes follow the performance issue's workload definitions.

import type { TreeSpec } from "./payload.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Workload names for --only, in the order they run. */
export const WORKLOADS = [
  "upload-large",
  "upload-small",
  "range",
  "head",
  "list",
  "get-small",
  "range-4k",
  "download",
  "borgstore",
  "upload-1g",
  "upload-1g-c16",
  "restic-backup",
  "startup",
] as const;
export type Workload = typeof WORKLOADS[number];

/** Run only when named in --only: 16 concurrent 1 GiB uploads write 16 GiB per server and run. */
export const OPT_IN_WORKLOADS: Workload[] = ["upload-1g-c16"];

/** Concurrent streams of the big object in upload-1g-c16. */
export const BIG_CONCURRENCY = 16;

/** The small-request workloads also run against the ceiling server. */
export const CEILING_WORKLOADS: Workload[] = ["upload-small", "head", "get-small"];

export interface Sizes {
  largeCount: number;
  largeSize: number;
  largeConc: number;
  smallCount: number;
  smallSize: number;
  smallConc: number;
  rangeCount: number;
  rangeSize: number;
  rangeConc: number;
  headCount: number;
  headConc: number;
  listReps: number;
  smallGetConc: number;
  range4kCount: number;
  range4kObjectSize: number;
  range4kConc: number;
  downloadCount: number;
  downloadConc: number;
  bigSize: number;
  startupReps: number;
  tree: TreeSpec;
  borgLargeCount: number;
  borgSmallCount: number;
  borgRangeCount: number;
}

export const FULL: Sizes = {
  largeCount: 64,
  largeSize: 16 * MiB,
  largeConc: 4,
  smallCount: 20000,
  smallSize: 4 * KiB,
  smallConc: 8,
  rangeCount: 2000,
  rangeSize: 256 * KiB,
  rangeConc: 4,
  headCount: 20000,
  headConc: 8,
  listReps: 5,
  smallGetConc: 8,
  range4kCount: 20000,
  range4kObjectSize: 50 * MiB,
  range4kConc: 8,
  downloadCount: 64,
  downloadConc: 4,
  bigSize: 1 * GiB,
  startupReps: 5,
  // 512 MiB in 8 large files + 480 MiB in 1920 medium files + 2000 small files ≈ 1 GiB
  tree: {
    largeFiles: 8,
    largeSize: 64 * MiB,
    mediumFiles: 1920,
    mediumSize: 256 * KiB,
    smallFiles: 2000,
    smallSize: 2 * KiB,
  },
  borgLargeCount: 8,
  borgSmallCount: 2000,
  borgRangeCount: 300,
};

export const QUICK: Sizes = {
  ...FULL,
  largeCount: 8,
  smallCount: 1000,
  rangeCount: 200,
  headCount: 2000,
  range4kCount: 1500,
  downloadCount: 8,
  bigSize: 128 * MiB,
  tree: {
    largeFiles: 1,
    largeSize: 16 * MiB,
    mediumFiles: 96,
    mediumSize: 256 * KiB,
    smallFiles: 100,
    smallSize: 2 * KiB,
  },
  borgLargeCount: 4,
  borgSmallCount: 500,
  borgRangeCount: 100,
};

export interface Options {
  runs: number;
  quick: boolean;
  reference: boolean;
  /** Whether to measure the ceiling server (the least a server can do) for small requests. */
  ceiling: boolean;
  only: Set<Workload>;
  sizes: Sizes;
  /** Where the servers' data goes (default: the system's temp directory). */
  dir?: string;
}

export const USAGE = `deno task bench [-- flags]

Benchmarks stowage against \`rclone serve restic\` (when installed) on loopback, interleaved,
and prints one table of medians (stowage / reference).

  --runs N          interleaved runs per server (default 3, at least 1)
  --quick           scaled-down sizes (about a minute in all)
  --only a,b,...    run only these workloads: ${WORKLOADS.join(", ")}
                    (${OPT_IN_WORKLOADS.join(", ")} only when named here)
  --no-reference    do not start rclone
  --no-ceiling      do not measure the ceiling server (${CEILING_WORKLOADS.join(", ")})
  --dir DIR         keep the servers' data under DIR (default: the temp directory); put it on
                    the file system the backups will live on: creating and syncing small files
                    costs very different amounts on different file systems
  -h, --help        this text
`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): Options | null {
  let runs = 3;
  let quick = false;
  let reference = true;
  let ceiling = true;
  let dir: string | undefined;
  let only = new Set<Workload>(WORKLOADS.filter((w) => !OPT_IN_WORKLOADS.includes(w)));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.includes("=") ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case "-h":
      case "--help":
        return null;
      case "--runs":
        runs = Number(value());
        if (!Number.isInteger(runs) || runs < 1) {
          throw new UsageError("--runs needs an integer ≥ 1");
        }
        break;
      case "--quick":
        quick = true;
        break;
      case "--no-reference":
        reference = false;
        break;
      case "--no-ceiling":
        ceiling = false;
        break;
      case "--dir":
        dir = value();
        if (dir === "") throw new UsageError("--dir needs a directory");
        break;
      case "--only": {
        const names = value().split(",").map((s) => s.trim()).filter(Boolean);
        for (const n of names) {
          if (!(WORKLOADS as readonly string[]).includes(n)) {
            throw new UsageError(`unknown workload ${n} (known: ${WORKLOADS.join(", ")})`);
          }
        }
        only = new Set(names as Workload[]);
        break;
      }
      case "--":
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return { runs, quick, reference, ceiling, only, sizes: quick ? QUICK : FULL, dir };
}

export function formatBytes(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  if (n >= MiB) return `${+(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${+(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}
