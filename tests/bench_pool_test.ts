// The benchmark's request pool (scripts/bench/http.ts): the bytes that concurrent loops report
// add up, so the MiB/s figures of concurrent workloads count every object once.

import { runPool } from "../scripts/bench/http.ts";
import { assertEquals } from "./_assert.ts";

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
