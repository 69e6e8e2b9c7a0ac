// Warms the page cache's memory before a workload that writes, so that both servers write into
// memory the guest has touched recently. On a VM with free page reporting (virtio-balloon),
// pages that stay free for about two seconds go back to the host, and the next write into them
// pays for the host to back them again: measured here, 512 MiB written into such pages moved at
// 670-710 MiB/s, the same writes into pages freed half a second before at 5100 MiB/s. Without
// the warm-up, whichever server writes first after a pause pays that cost and the other one
// reuses its freed pages, which skews every upload figure towards the second server. A server
// that has been running for a while writes into recycled page cache, so warm pages are the
// representative case.

import { writeAll } from "../../src/transport/node_bridge.ts";

const CHUNK = 1024 * 1024;

/** Writes `bytes` to a scratch file in `dir` and removes it again; returns the seconds taken. */
export async function warmPageCache(dir: string, bytes: number): Promise<number> {
  if (!(bytes > 0)) return 0;
  const started = performance.now();
  const path = `${dir}/.page-cache-warm-${crypto.randomUUID()}`;
  try {
    await writeScratch(path, bytes);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
  return (performance.now() - started) / 1000;
}

/** Creates `path` (which must not exist) holding `bytes` zero bytes. */
export async function writeScratch(path: string, bytes: number): Promise<void> {
  const chunk = new Uint8Array(CHUNK);
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    for (let done = 0; done < bytes; done += CHUNK) {
      await writeAll(file, chunk.subarray(0, Math.min(CHUNK, bytes - done)));
    }
  } finally {
    file.close();
  }
}

/** Page-cache bytes `count` objects of `size` bytes take (whole 4 KiB pages each). */
export function pageBytes(count: number, size: number): number {
  return count * Math.ceil(size / 4096) * 4096;
}
