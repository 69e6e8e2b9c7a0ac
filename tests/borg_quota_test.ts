// BorgStore quota (spec §7): the quota.hid format, the delta-merge persist rule shared by several
// instances (processes) on one store, rescans, removal of quota.hid without a limit, the
// inode-change retry after acquiring the lock, persist thresholds, reserve/commit semantics
// and, through HTTP, that 16 concurrent stores can never together exceed a small limit.

import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { call, exists, startServer } from "./borgstore_helpers.ts";
import { BorgQuota, QUOTA_FILE, scanUsage } from "../src/policy/borg_quota.ts";
import { StowageError } from "../src/errors.ts";

function tempStore(): Promise<string> {
  return Deno.makeTempDir({ prefix: "stowage-quota-" });
}

function isQuotaError(expectedMessage: string) {
  return (error: unknown) =>
    error instanceof StowageError && error.kind === "QuotaExceeded" &&
    error.message === expectedMessage;
}

Deno.test("scan: regular files only, recursive, symlinks not followed, quota.hid excluded", async () => {
  const root = await tempStore();
  try {
    await Deno.mkdir(`${root}/a/b`, { recursive: true });
    await Deno.writeFile(`${root}/a/b/item`, new Uint8Array(100));
    await Deno.writeFile(`${root}/a/leftover.tmp`, new Uint8Array(10));
    await Deno.writeFile(`${root}/a/item.del`, new Uint8Array(5));
    await Deno.writeFile(`${root}/FOREIGN`, new Uint8Array(1));
    await Deno.writeTextFile(`${root}/${QUOTA_FILE}`, "999999");
    await Deno.writeFile(`${root}/a/${QUOTA_FILE}`, new Uint8Array(7)); // only the top one is special
    await Deno.symlink(`${root}/a/b/item`, `${root}/link`);
    await Deno.symlink(`${root}/a`, `${root}/dirlink`);
    assertEquals(await scanUsage(root), 100 + 10 + 5 + 1 + 7);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("open: missing or unparsable quota.hid → scan and write; format is bare digits", async () => {
  const root = await tempStore();
  try {
    await Deno.writeFile(`${root}/x`, new Uint8Array(1234));
    const quota = new BorgQuota(root, 10_000);
    assertEquals(await quota.usage(), 1234);
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1234");
    await quota.close();

    await Deno.writeTextFile(`${root}/${QUOTA_FILE}`, "garbage\n");
    const again = new BorgQuota(root, 10_000);
    assertEquals(await again.usage(), 1234);
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1234");
    await again.close();

    // A parsable value is trusted (no scan): that is what lets processes share the file.
    await Deno.writeTextFile(`${root}/${QUOTA_FILE}`, "500");
    const trusted = new BorgQuota(root, 10_000);
    assertEquals(await trusted.usage(), 500);
    await trusted.close();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "500");
    // No temp files are left next to it.
    assertEquals([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["quota.hid", "x"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("delta merge: two instances storing 500 and 300 end with 800 on disk", async () => {
  const root = await tempStore();
  try {
    const first = new BorgQuota(root, 10_000);
    const second = new BorgQuota(root, 10_000);
    assertEquals(await first.usage(), 0);
    assertEquals(await second.usage(), 0);
    const a = await first.reserve(500);
    await a.commit();
    const b = await second.reserve(300);
    await b.commit();
    assertEquals(await first.usage(), 500);
    assertEquals(await second.usage(), 300);
    await first.close();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "500");
    await second.close();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "800");
    const reader = new BorgQuota(root, 10_000);
    assertEquals(await reader.usage(), 800);
    await reader.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("delta merge never goes below zero", async () => {
  const root = await tempStore();
  try {
    const quota = new BorgQuota(root, 10_000);
    await quota.open();
    await Deno.writeTextFile(`${root}/${QUOTA_FILE}`, "100");
    await quota.record(-300);
    await quota.persist();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "0");
    await quota.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("two servers on one store merge their usage (HTTP)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-quota-http-" });
  try {
    const one = await startServer({ dir, quota: 10_000, create: true });
    const two = await startServer({ dir, quota: 10_000 });
    try {
      assertEquals((await call(one, "POST", "/a", { body: new Uint8Array(500) })).status, 200);
      assertEquals((await call(two, "POST", "/b", { body: new Uint8Array(300) })).status, 200);
    } finally {
      await one.close();
      await two.close();
    }
    assertEquals(await Deno.readTextFile(`${dir}/store/${QUOTA_FILE}`), "800");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without a limit quota.hid is deleted on first use", async () => {
  const root = await tempStore();
  try {
    await Deno.writeTextFile(`${root}/${QUOTA_FILE}`, "42");
    const quota = new BorgQuota(root, null);
    assertEquals(quota.limit(), -1);
    assertEquals(await quota.usage(), -1);
    await quota.open();
    assertEquals(await exists(`${root}/${QUOTA_FILE}`), false);
    const reservation = await quota.reserve(1e12); // never limited
    await reservation.commit();
    await quota.close();
    assertEquals(await exists(`${root}/${QUOTA_FILE}`), false);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("reservations: equality passes, outstanding reservations count, release frees", async () => {
  const root = await tempStore();
  try {
    const quota = new BorgQuota(root, 1000);
    const a = await quota.reserve(600);
    await assertRejects(() => quota.reserve(500), isQuotaError("Quota exceeded: 1100 > 1000"));
    const b = await quota.reserve(400); // 600 + 400 = 1000: equality passes
    assertEquals(a.delta, 600);
    b.release();
    assertEquals(await quota.usage(), 0);
    await a.commit();
    assertEquals(await quota.usage(), 600);
    // Growing a reservation is checked, shrinking is not.
    const c = await quota.reserve(100);
    let threw = false;
    try {
      c.resize(401);
    } catch (error) {
      threw = isQuotaError("Quota exceeded: 1001 > 1000")(error);
    }
    assert(threw, "resize past the limit must throw QuotaExceeded");
    c.resize(400);
    c.resize(-50);
    await c.commit();
    assertEquals(await quota.usage(), 550);
    // Commit after release (or twice) changes nothing.
    c.release();
    await c.commit();
    assertEquals(await quota.usage(), 550);
    await quota.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("limit 0 accepts only empty items", async () => {
  const root = await tempStore();
  try {
    const quota = new BorgQuota(root, 0);
    (await quota.reserve(0)).release();
    await assertRejects(() => quota.reserve(1), isQuotaError("Quota exceeded: 1 > 0"));
    await quota.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("persist thresholds: delta and interval", async () => {
  const root = await tempStore();
  try {
    const byDelta = new BorgQuota(root, 1e9, { persistDelta: 1000 });
    await byDelta.open();
    await (await byDelta.reserve(999)).commit();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "0");
    await (await byDelta.reserve(1)).commit();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1000");
    await byDelta.close();

    const byTime = new BorgQuota(root, 1e9, { persistIntervalMs: 50 });
    await byTime.open();
    await (await byTime.reserve(5)).commit();
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1000");
    const deadline = Date.now() + 5000;
    while (await Deno.readTextFile(`${root}/${QUOTA_FILE}`) !== "1005" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1005");
    await byTime.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("persist re-opens quota.hid when it was replaced while waiting for the lock", async () => {
  const root = await tempStore();
  try {
    const quota = new BorgQuota(root, 1e9);
    await quota.open(); // writes "0"
    await (await quota.reserve(7)).commit();
    // Another process (e.g. the Python reference) holds the lock on the current file ...
    const holder = await Deno.open(`${root}/${QUOTA_FILE}`, { read: true, write: true });
    await holder.lock(true);
    const persisting = quota.persist();
    await new Promise((resolve) => setTimeout(resolve, 50));
    // ... and replaces it by rename with its own merged value before unlocking.
    await Deno.writeTextFile(`${root}/quota.hid.other`, "1000");
    await Deno.rename(`${root}/quota.hid.other`, `${root}/${QUOTA_FILE}`);
    await holder.unlock();
    holder.close();
    await persisting;
    assertEquals(await Deno.readTextFile(`${root}/${QUOTA_FILE}`), "1007");
    assertEquals(await quota.usage(), 1007);
    await quota.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("reset (destroy) forgets usage; the next use rescans", async () => {
  const root = await tempStore();
  try {
    const quota = new BorgQuota(root, 1e9);
    const pending = await quota.reserve(100);
    quota.reset();
    await pending.commit(); // from before the reset: ignored
    await Deno.writeFile(`${root}/y`, new Uint8Array(42));
    await Deno.remove(`${root}/${QUOTA_FILE}`);
    assertEquals(await quota.usage(), 42);
    await quota.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("HTTP accounting: store, overwrite, delete, replacing move, defrag", async () => {
  const server = await startServer({ quota: 100_000, create: true });
  const usage = async () =>
    JSON.parse((await call(server, "POST", "/?cmd=quota")).text).usage as number;
  try {
    await call(server, "POST", "/a", { body: new Uint8Array(1000) });
    await call(server, "POST", "/b", { body: new Uint8Array(300) });
    assertEquals(await usage(), 1300);
    await call(server, "POST", "/a", { body: new Uint8Array(10) });
    assertEquals(await usage(), 310);
    await call(server, "POST", "/?cmd=move&current=a&new=b");
    assertEquals(await usage(), 10); // beyond the reference: the replaced b no longer counts
    await call(server, "POST", "/?cmd=defrag&target=c", { body: '[["b", 0, 10], ["b", 2, 5]]' });
    assertEquals(await usage(), 25);
    await call(server, "DELETE", "/b");
    assertEquals(await usage(), 15);
    assertEquals(await usage(), await scanUsage(server.root));
  } finally {
    await server.close();
  }
});

Deno.test("concurrency: 16 parallel stores never exceed a small limit", async () => {
  const server = await startServer({ quota: 10_000, create: true });
  try {
    const results = await Promise.all(
      Array.from(
        { length: 16 },
        (_, i) => call(server, "POST", `/item${i}`, { body: new Uint8Array(1000).fill(i) }),
      ),
    );
    const statuses = results.map((r) => r.status);
    assertEquals(statuses.filter((s) => s === 200).length, 10);
    assertEquals(statuses.filter((s) => s === 507).length, 6);
    const usage = JSON.parse((await call(server, "POST", "/?cmd=quota")).text).usage;
    assertEquals(usage, 10_000);
    assertEquals(await scanUsage(server.root), 10_000);

    // Chunked bodies (no Content-Length): enforced while streaming.
    for (let i = 0; i < 16; i++) await call(server, "DELETE", `/item${i}`);
    assertEquals(await scanUsage(server.root), 0);
    const chunked = await Promise.all(
      Array.from({ length: 16 }, (_, i) => {
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            for (let part = 0; part < 4; part++) {
              controller.enqueue(new Uint8Array(250).fill(i));
              await new Promise((resolve) => setTimeout(resolve, 5));
            }
            controller.close();
          },
        });
        return call(server, "POST", `/chunked${i}`, { body });
      }),
    );
    assert(chunked.every((r) => r.status === 200 || r.status === 507));
    const after = JSON.parse((await call(server, "POST", "/?cmd=quota")).text).usage;
    assert(after <= 10_000, `usage ${after} exceeds the limit`);
    assertEquals(after, await scanUsage(server.root));
    assertEquals(after, chunked.filter((r) => r.status === 200).length * 1000);
  } finally {
    await server.close();
  }
});
