// Finds the repositories below a data directory and measures them, for quota scopes and
// `stowage status`: restic repositories and borg stores at depth 0–2 (as rest-server and the
// borg router address them), their size (regular files, temp files of unfinished uploads and
// borg's quota.hid excluded), object count, and the time of the newest backup (restic: newest
// file in snapshots/; borg: newest item in archives/). Symlinks are never followed.

import { isTempName } from "../storage/keys.ts";

export type RepoProtocol = "restic" | "borg";

export interface RepoInfo {
  /** Path below the data directory, "" for the data directory itself. */
  key: string;
  segments: string[];
  protocol: RepoProtocol;
  /** Sum of the sizes of the regular files. */
  bytes: number;
  /** Number of regular files. */
  objects: number;
  /** mtime (ms since the epoch) of the newest snapshot/archive, or null when there is none. */
  newestBackup: number | null;
}

const MAX_DEPTH = 2;

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch {
    return null;
  }
}

/** The protocol of the directory at `path` (the same markers as the protocol guard), or null. */
export async function detectProtocol(path: string): Promise<RepoProtocol | null> {
  const config = await lstatOrNull(`${path}/config`);
  if (config !== null) return config.isDirectory ? "borg" : "restic";
  if (await lstatOrNull(`${path}/packs`) || await lstatOrNull(`${path}/archives`)) return "borg";
  if (await lstatOrNull(`${path}/snapshots`) || await lstatOrNull(`${path}/keys`)) return "restic";
  return null;
}

/** Walks one repository: bytes, objects and the newest backup. */
export async function measureRepository(
  path: string,
  protocol: RepoProtocol,
): Promise<{ bytes: number; objects: number; newestBackup: number | null }> {
  const backups = protocol === "restic" ? "snapshots" : "archives";
  let bytes = 0;
  let objects = 0;
  let newest: number | null = null;
  const pending: { dir: string; rel: string }[] = [{ dir: path, rel: "" }];
  while (pending.length > 0) {
    const { dir, rel } = pending.pop()!;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      continue; // vanished or unreadable
    }
    for (const entry of entries) {
      if (isTempName(entry.name)) continue;
      const full = `${dir}/${entry.name}`;
      const relative = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory) {
        pending.push({ dir: full, rel: relative });
        continue;
      }
      if (!entry.isFile) continue;
      if (protocol === "borg" && relative === "quota.hid") continue;
      const info = await lstatOrNull(full);
      if (info === null) continue;
      bytes += info.size;
      objects++;
      if (relative.startsWith(`${backups}/`)) {
        const mtime = info.mtime?.getTime() ?? 0;
        if (newest === null || mtime > newest) newest = mtime;
      }
    }
  }
  return { bytes, objects, newestBackup: newest };
}

/** Every repository at depth 0–2 below `root`, sorted by key; [] when root does not exist. */
export async function scanRepositories(root: string): Promise<RepoInfo[]> {
  const found: RepoInfo[] = [];
  const candidates: string[][] = [[]];
  for (let i = 0; i < candidates.length; i++) {
    const segments = candidates[i];
    const path = segments.length === 0 ? root : `${root}/${segments.join("/")}`;
    const protocol = await detectProtocol(path);
    if (protocol !== null) {
      found.push({
        key: segments.join("/"),
        segments,
        protocol,
        ...await measureRepository(path, protocol),
      });
      continue;
    }
    if (segments.length >= MAX_DEPTH) continue;
    try {
      for await (const entry of Deno.readDir(path)) {
        if (entry.isDirectory && !isTempName(entry.name)) {
          candidates.push([...segments, entry.name]);
        }
      }
    } catch {
      // missing or unreadable directory: nothing below it
    }
  }
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
