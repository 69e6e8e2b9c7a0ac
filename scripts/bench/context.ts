// Shared state of one bench invocation (payloads made once and reused by every run and server)
// and of one server session: where results go, and the wrapper that measures a workload's
// server CPU time and peak RSS alongside its client-side figure.

import type { Options, Sizes } from "./config.ts";
import { ObjectSet, StreamedObject } from "./payload.ts";
import { ProcWatch, type Usage } from "./proc.ts";
import type { Results, Unit } from "./report.ts";
import type { RunningServer } from "./servers.ts";
import { warmPageCache } from "./warm.ts";

export function log(line: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
}

/** Payloads, created on first use. */
export class BenchData {
  #large?: ObjectSet;
  #small?: ObjectSet;
  #rangeObject?: ObjectSet;
  #big?: StreamedObject;

  constructor(readonly sizes: Sizes) {}

  get large(): ObjectSet {
    return this.#large ??= new ObjectSet(1, this.sizes.largeCount, this.sizes.largeSize);
  }
  get small(): ObjectSet {
    return this.#small ??= new ObjectSet(2, this.sizes.smallCount, this.sizes.smallSize);
  }
  get rangeObject(): ObjectSet {
    return this.#rangeObject ??= new ObjectSet(4, 1, this.sizes.range4kObjectSize);
  }
  get big(): StreamedObject {
    return this.#big ??= new StreamedObject(3, this.sizes.bigSize);
  }
}

export interface Session {
  server: RunningServer;
  options: Options;
  data: BenchData;
  results: Results;
  /** The highest peak RSS seen by `measure` in this session. */
  peakRssMiB: number;
  /** A directory on the data directories' file system, for the page-cache warm-up. */
  scratchDir: string;
}

export function newSession(
  server: RunningServer,
  options: Options,
  data: BenchData,
  results: Results,
  scratchDir: string,
): Session {
  return { server, options, data, results, peakRssMiB: NaN, scratchDir };
}

/**
 * Runs one workload while watching the server process. `fn` returns the client-side figure
 * (in `unit`) or null when it is not to be recorded; the server CPU time is recorded as a
 * sub-row named after `name`.
 */
export async function measure(
  session: Session,
  name: string,
  label: string,
  unit: Unit,
  fn: () => Promise<number | null>,
  /** Bytes the workload writes to storage: that much page cache is warmed first (warm.ts). */
  writesBytes = 0,
): Promise<Usage> {
  await warmPageCache(session.scratchDir, writesBytes);
  const watch = new ProcWatch(session.server.pid);
  let value: number | null;
  let usage: Usage;
  try {
    value = await fn();
  } finally {
    usage = watch.stop();
  }
  if (!(usage.peakRssMiB <= session.peakRssMiB)) session.peakRssMiB = usage.peakRssMiB;
  const kind = session.server.kind;
  if (value !== null) {
    session.results.add(kind, label, unit, value);
    session.results.add(kind, `  ${name}: server CPU`, "s", usage.cpuSeconds);
  }
  log(
    `${kind.padEnd(9)} ${name.padEnd(16)} ${value === null ? "(setup)" : `${fmt(value)} ${unit}`}` +
      `, server CPU ${fmt(usage.cpuSeconds)} s (sys ${fmt(usage.sysSeconds)}), RSS ` +
      `${fmt(usage.startRssMiB)} → peak ${fmt(usage.peakRssMiB)} MiB`,
  );
  return usage;
}

function fmt(n: number): string {
  return Number.isFinite(n) ? (Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(2)) : "?";
}

export const MiB = 1024 * 1024;
