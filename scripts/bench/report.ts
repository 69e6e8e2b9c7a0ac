// Collects per-run measurements for every server and prints the one result table of medians:
// workload | stowage | reference | ratio (stowage / reference), with units; when the ceiling
// server was measured, two more columns: ceiling | stowage / ceiling.

import type { ServerKind } from "./servers.ts";

export type Unit = "MiB/s" | "req/s" | "ms" | "s" | "MiB";

interface Row {
  label: string;
  unit: Unit;
  values: Record<ServerKind, number[]>;
  /** Replaces the cells when set (e.g. "not available"). */
  text?: string;
}

export class Results {
  readonly #rows = new Map<string, Row>();

  add(kind: ServerKind, label: string, unit: Unit, value: number): void {
    this.#row(label, unit).values[kind].push(value);
  }

  /** A row that carries a remark instead of numbers. */
  remark(label: string, text: string): void {
    if (!this.#rows.has(label)) {
      this.#rows.set(label, { label, unit: "s", values: emptyValues(), text });
    }
  }

  #row(label: string, unit: Unit): Row {
    let row = this.#rows.get(label);
    if (!row) {
      row = { label, unit, values: emptyValues() };
      this.#rows.set(label, row);
    }
    return row;
  }

  table(): string {
    const rows = [...this.#rows.values()];
    const withCeiling = rows.some((row) => row.values.ceiling.length > 0);
    const head = ["workload", "stowage", "reference", "ratio"];
    const lines: string[][] = [withCeiling ? [...head, "ceiling", "of ceiling"] : head];
    for (const row of rows) {
      if (row.text !== undefined) {
        lines.push([row.label, row.text, ...Array(lines[0].length - 2).fill("")]);
        continue;
      }
      const a = median(row.values.stowage);
      const b = median(row.values.reference);
      const line = [row.label, cell(a, row.unit), cell(b, row.unit), ratio(a, b)];
      if (withCeiling) {
        const c = median(row.values.ceiling);
        line.push(
          Number.isFinite(c) ? cell(c, row.unit) : "",
          Number.isFinite(c) ? ratio(a, c) : "",
        );
      }
      lines.push(line);
    }
    const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
    const render = (l: string[]) =>
      l.map((text, c) => c === 0 ? text.padEnd(widths[c]) : text.padStart(widths[c])).join(" | ");
    const out = [render(lines[0]), widths.map((w) => "-".repeat(w)).join("-|-")];
    for (const l of lines.slice(1)) out.push(render(l));
    return out.join("\n");
  }
}

function emptyValues(): Record<ServerKind, number[]> {
  return { stowage: [], reference: [], ceiling: [] };
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : "—";
}

export function median(values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  return abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function cell(value: number, unit: Unit): string {
  return Number.isFinite(value) ? `${formatNumber(value)} ${unit}` : "—";
}
