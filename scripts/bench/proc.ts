// Server process accounting for the bench, read from /proc (Linux): CPU time (utime + stime of
// /proc/<pid>/stat) and peak RSS (VmHWM of /proc/<pid>/status). The peak is reset per workload
// through /proc/<pid>/clear_refs when the kernel allows it; otherwise a 50 ms VmRSS sampler
// provides the peak instead. Everything degrades to NaN where /proc is missing.

/** Linux USER_HZ: the unit of utime/stime. 100 on every mainstream kernel build. */
const CLOCK_TICKS = 100;

export interface ProcSample {
  /** utime + stime in seconds. */
  cpuSeconds: number;
  /** stime alone, in seconds. */
  sysSeconds: number;
  /** VmHWM in MiB. */
  hwmMiB: number;
  /** VmRSS in MiB. */
  rssMiB: number;
}

/** Reads one sample; NaN fields when the process is gone or /proc is not there. */
export function readProc(pid: number): ProcSample {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Field 2 (comm) may contain spaces: split after the last ')'. Then field 3 is index 0.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    const sysSeconds = Number(fields[12]) / CLOCK_TICKS;
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const hwmMiB = kib(status, "VmHWM") / 1024;
    return { cpuSeconds, sysSeconds, hwmMiB, rssMiB: kib(status, "VmRSS") / 1024 };
  } catch {
    return { cpuSeconds: NaN, sysSeconds: NaN, hwmMiB: NaN, rssMiB: NaN };
  }
}

function kib(status: string, key: string): number {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
  return match ? Number(match[1]) : NaN;
}

/** Resets VmHWM to the current RSS; false when not permitted. */
function resetPeak(pid: number): boolean {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

export interface Usage {
  cpuSeconds: number;
  sysSeconds: number;
  peakRssMiB: number;
  startRssMiB: number;
}

/** Measures one process over a span: CPU seconds used and peak RSS reached in the span. */
export class ProcWatch {
  #pid: number;
  #start: ProcSample;
  #resetOk: boolean;
  #maxRss: number;
  #timer: ReturnType<typeof setInterval>;

  constructor(pid: number) {
    this.#pid = pid;
    this.#resetOk = resetPeak(pid);
    this.#start = readProc(pid);
    this.#maxRss = this.#start.rssMiB;
    this.#timer = setInterval(() => {
      const rss = readProc(this.#pid).rssMiB;
      if (rss > this.#maxRss) this.#maxRss = rss;
    }, 50);
  }

  stop(): Usage {
    clearInterval(this.#timer);
    const end = readProc(this.#pid);
    const sampled = Math.max(this.#maxRss, end.rssMiB);
    return {
      cpuSeconds: end.cpuSeconds - this.#start.cpuSeconds,
      sysSeconds: end.sysSeconds - this.#start.sysSeconds,
      peakRssMiB: this.#resetOk ? Math.max(end.hwmMiB, sampled) : sampled,
      startRssMiB: this.#start.rssMiB,
    };
  }
}
