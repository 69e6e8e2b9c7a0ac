// Per-repository figures for metrics and status: bytes stored and the time of the newest
// snapshot. Measured once by a background walk of the data directory, then kept current from
// the blob events of the restic protocol (writes, deletes), so a scrape costs nothing.

import type { BlobOperation, ResticMetrics } from "../protocol/restic.ts";

const RESTIC_TYPES = ["data", "index", "keys", "locks", "snapshots"];

export class RepoStats implements ResticMetrics {
  readonly #usage = new Map<string, number>();
  readonly #lastSnapshot = new Map<string, number>();

  /** Counts a blob event (the ResticMetrics contract). */
  blob(op: BlobOperation, labels: { repo: string; type: string }, bytes: number): void {
    if (op === "read") return;
    const delta = op === "write" ? bytes : -bytes;
    this.#usage.set(labels.repo, Math.max(0, (this.#usage.get(labels.repo) ?? 0) + delta));
    if (op === "write" && labels.type === "snapshots") {
      this.#lastSnapshot.set(labels.repo, Date.now() / 1000);
    }
  }

  usage(): Iterable<{ repo: string; bytes: number }> {
    return [...this.#usage].map(([repo, bytes]) => ({ repo, bytes }));
  }

  snapshots(): Iterable<{ repo: string; seconds: number }> {
    return [...this.#lastSnapshot].map(([repo, seconds]) => ({ repo, seconds }));
  }

  /** Walks the data directory once: repositories at depth 0–2, their sizes and snapshots. */
  async scan(root: string): Promise<void> {
    const candidates: string[] = [""];
    for (let i = 0; i < candidates.length; i++) {
      const repo = candidates[i];
      const path = repo === "" ? root : `${root}/${repo}`;
      let isRepo = false;
      try {
        for await (const entry of Deno.readDir(path)) {
          if (entry.name === "config" && entry.isFile) isRepo = true;
          else if (entry.isDirectory && !RESTIC_TYPES.includes(entry.name)) {
            if (repo.split("/").filter((p) => p).length < 2) {
              candidates.push(repo === "" ? entry.name : `${repo}/${entry.name}`);
            }
          }
        }
      } catch {
        continue;
      }
      if (isRepo) await this.#measure(repo, path);
    }
  }

  async #measure(repo: string, path: string): Promise<void> {
    let bytes = (await Deno.lstat(`${path}/config`).catch(() => null))?.size ?? 0;
    let newest = 0;
    for (const type of RESTIC_TYPES) {
      const dirs = [`${path}/${type}`];
      while (dirs.length > 0) {
        const dir = dirs.pop()!;
        try {
          for await (const entry of Deno.readDir(dir)) {
            const info = await Deno.lstat(`${dir}/${entry.name}`).catch(() => null);
            if (info === null) continue;
            if (info.isDirectory && type === "data") dirs.push(`${dir}/${entry.name}`);
            else if (info.isFile) {
              bytes += info.size;
              if (type === "snapshots") newest = Math.max(newest, info.mtime?.getTime() ?? 0);
            }
          }
        } catch {
          // missing type directory
        }
      }
    }
    // Events that arrived during the walk are already in the maps: add, do not overwrite.
    this.#usage.set(repo, (this.#usage.get(repo) ?? 0) + bytes);
    if (newest > 0) {
      this.#lastSnapshot.set(repo, Math.max(this.#lastSnapshot.get(repo) ?? 0, newest / 1000));
    }
  }
}
