// Shared directory fsyncs (src/storage/dir_sync.ts): a caller is answered only by an fsync that
// started after its call; callers arriving while one runs share the next; a failure reaches
// exactly the callers of that fsync; directories do not wait for each other; nothing is left
// behind. And through FsProvider: concurrent uploads into one directory all land and are listed.

import { DirSyncs } from "../src/storage/dir_sync.ts";
import { FsProvider } from "../src/storage/fs.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";

/** A fake fsync whose rounds the test finishes by hand; records when each started. */
class ManualSyncs {
  readonly started: string[] = [];
  readonly #pending: { resolve: () => void; reject: (error: Error) => void }[] = [];

  syncOne = (dir: string): Promise<void> => {
    this.started.push(dir);
    return new Promise((resolve, reject) => this.#pending.push({ resolve, reject }));
  };

  /** Finishes the oldest running fsync (with an error when given). */
  async finish(error?: Error): Promise<void> {
    const next = this.#pending.shift();
    assert(next !== undefined, "no fsync is running");
    if (error) next.reject(error);
    else next.resolve();
    // let the callers' continuations and the next round's start run
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
}

/** Tracks whether a promise has settled yet. */
function watch(promise: Promise<void>): { settled: boolean; failed: unknown } {
  const state = { settled: false, failed: undefined as unknown };
  promise.then(() => state.settled = true, (error) => {
    state.settled = true;
    state.failed = error;
  });
  return state;
}

Deno.test("dir syncs: callers during a running fsync share one that starts after it", async () => {
  const fake = new ManualSyncs();
  const syncs = new DirSyncs(fake.syncOne);
  const first = watch(syncs.sync("/d"));
  assertEquals(fake.started, ["/d"]);
  // three uploads finish while the first fsync runs: none of them may count on it
  const waiting = [watch(syncs.sync("/d")), watch(syncs.sync("/d")), watch(syncs.sync("/d"))];
  assertEquals(fake.started, ["/d"], "no second fsync while one runs");
  await fake.finish();
  assert(first.settled && first.failed === undefined);
  assert(waiting.every((w) => !w.settled), "answered by an fsync that started before they asked");
  assertEquals(fake.started, ["/d", "/d"], "one shared fsync for the three");
  // one more arrives while the shared one runs: it waits for a third
  const late = watch(syncs.sync("/d"));
  await fake.finish();
  assert(waiting.every((w) => w.settled && w.failed === undefined));
  assert(!late.settled);
  assertEquals(fake.started.length, 3);
  await fake.finish();
  assert(late.settled && late.failed === undefined);
  assertEquals(syncs.busy, 0, "nothing left behind");
});

Deno.test("dir syncs: a failure reaches its own callers only; the next round still runs", async () => {
  const fake = new ManualSyncs();
  const syncs = new DirSyncs(fake.syncOne);
  const failing = syncs.sync("/d");
  const queued = watch(syncs.sync("/d"));
  await fake.finish(new Error("EIO"));
  await assertRejects(() => failing);
  assert(!queued.settled, "the queued round has not run yet");
  assertEquals(fake.started.length, 2, "the queued round started after the failure");
  await fake.finish();
  assert(queued.settled && queued.failed === undefined);
  assertEquals(syncs.busy, 0);
});

Deno.test("dir syncs: different directories run side by side", async () => {
  const fake = new ManualSyncs();
  const syncs = new DirSyncs(fake.syncOne);
  const a = watch(syncs.sync("/a"));
  const b = watch(syncs.sync("/b"));
  assertEquals(fake.started, ["/a", "/b"]);
  await fake.finish();
  await fake.finish();
  assert(a.settled && b.settled);
  assertEquals(syncs.busy, 0);
});

Deno.test("dir syncs: concurrent uploads into one directory all land", async () => {
  const root = await Deno.makeTempDir();
  try {
    const provider = new FsProvider(root);
    const names = Array.from({ length: 40 }, (_, i) => `ns/item${String(i).padStart(2, "0")}`);
    await Promise.all(names.map(async (name) => {
      const upload = await provider.begin(name);
      const writer = upload.writable.getWriter();
      await writer.write(new TextEncoder().encode(name));
      await writer.close();
      await upload.commit({ replace: false });
    }));
    const listed: string[] = [];
    for await (const entry of provider.list("ns")) listed.push(`ns/${entry.name}`);
    assertEquals(listed, names);
    for (const name of names) {
      assertEquals(await Deno.readTextFile(`${root}/${name}`), name);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
