// The benchmark's fairness and counting (scripts/bench/): the bytes that concurrent loops report
// add up, so the MiB/s figures of concurrent workloads count every object once; the servers take
// turns coming first in a run; the page-cache warm-up writes what it is asked and cleans up.

import { runPool } from "../scripts/bench/http.ts";
import { serverOrder } from "../scripts/bench/servers.ts";
import { pageBytes, warmPageCache, writeScratch } from "../scripts/bench/warm.ts";
import { assert, assertEquals } from "./_assert.ts";

Deno.test("bench pool: concurrent jobs' byte counts all add up", async () => {
  const seen: number[] = [];
  const result = await runPool(1, 12, 4, async (index) => {
    // every loop is inside a job at the same time, as with real overlapping uploads
    await new Promise((resolve) => setTimeout(resolve, 5 + (index % 3)));
    seen.push(index);
    return 1000 + index;
  });
  assertEquals(seen.sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => i));
  assertEquals(result.count, 12);
  assertEquals(result.bytes, 12 * 1000 + (11 * 12) / 2);
});

Deno.test("bench order: the servers take turns coming first", () => {
  const kinds = ["stowage", "reference"] as const;
  assertEquals([1, 2, 3, 4].map((run) => serverOrder(kinds, run)), [
    ["stowage", "reference"],
    ["reference", "stowage"],
    ["stowage", "reference"],
    ["reference", "stowage"],
  ]);
  assertEquals(serverOrder(["stowage"], 2), ["stowage"]);
  assertEquals([...kinds], ["stowage", "reference"]); // the input is left as it was
});

Deno.test("bench warm-up: writes the bytes asked for and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-warm-test-" });
  try {
    const bytes = 3 * 1024 * 1024 + 5;
    await writeScratch(`${dir}/scratch`, bytes);
    assertEquals((await Deno.stat(`${dir}/scratch`)).size, bytes);
    await Deno.remove(`${dir}/scratch`);
    assert(await warmPageCache(dir, 64 * 1024 * 1024) > 0, "the warm-up took no time");
    assertEquals([...Deno.readDirSync(dir)], []);
    assertEquals(await warmPageCache(dir, 0), 0);
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench warm-up: page bytes are whole 4 KiB pages per object", () => {
  assertEquals(pageBytes(1000, 4096), 1000 * 4096);
  assertEquals(pageBytes(3, 4097), 3 * 8192);
  assertEquals(pageBytes(2, 16 * 1024 * 1024), 32 * 1024 * 1024);
  assertEquals(pageBytes(0, 100), 0);
});
