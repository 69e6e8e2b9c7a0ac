// gc_hint: the pacing of minor collections, the V8 flags that expose `gc` to it (compile script,
// tasks), and the fs provider reporting the bytes it writes and reads.

import { BYTES_PER_COLLECTION, CollectionPacer, type ExposedGc } from "../src/gc_hint.ts";
import { V8_FLAGS } from "../scripts/compile.ts";
import { assert, assertEquals } from "./_assert.ts";

const MiB = 1024 * 1024;

Deno.test("CollectionPacer collects once per BYTES_PER_COLLECTION moved, minor and synchronous", () => {
  const calls: Parameters<ExposedGc>[0][] = [];
  const pacer = new CollectionPacer((options) => calls.push(options));
  pacer.note(BYTES_PER_COLLECTION - 1);
  assertEquals(calls.length, 0);
  pacer.note(1);
  assertEquals(calls, [{ type: "minor", execution: "sync" }]);
  // the count starts again after a collection
  pacer.note(BYTES_PER_COLLECTION / 2);
  assertEquals(calls.length, 1);
  for (let i = 0; i < 8; i++) pacer.note(BYTES_PER_COLLECTION / 4);
  assertEquals(calls.length, 3);
});

Deno.test("CollectionPacer does nothing when the runtime exposes no gc", () => {
  const pacer = new CollectionPacer(undefined, 1);
  for (let i = 0; i < 100; i++) pacer.note(MiB);
});

Deno.test("the tasks and the executables run with the V8 flags, which expose gc", async () => {
  assert(V8_FLAGS.includes("--expose-gc"), V8_FLAGS);
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
    .tasks as Record<string, string>;
  for (const name of ["start", "serve"]) {
    assert(tasks[name].includes(` ${V8_FLAGS} `), `task ${name} lacks ${V8_FLAGS}`);
  }
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", V8_FLAGS, 'gc({ type: "minor", execution: "sync" }); console.log(typeof gc)'],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(new TextDecoder().decode(output.stderr), "");
  assertEquals(new TextDecoder().decode(output.stdout).trim(), "function");
});

Deno.test("the fs provider reports the bytes it writes, streams and reads in one piece", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-gc-hint-" });
  try {
    // A child with gc exposed counts the collections while it writes and reads 24 MiB, then
    // reads 8 MiB more in small pieces.
    const script = `
      const realGc = globalThis.gc;
      let collections = 0;
      globalThis.gc = (options) => { collections++; realGc(options); };
      const { FsProvider } = await import(${
      JSON.stringify(import.meta.resolve("../src/storage/fs.ts"))
    });
      const provider = new FsProvider(${JSON.stringify(dir)});
      const size = 24 * 1024 * 1024;
      const upload = await provider.begin("object", { sizeHint: size });
      const writer = upload.writable.getWriter();
      for (let at = 0; at < size; at += 65536) await writer.write(new Uint8Array(65536));
      await writer.close();
      await upload.commit({ replace: false });
      const written = collections;
      let read = 0;
      for await (const chunk of await provider.read("object")) read += chunk.byteLength;
      const streamed = collections;
      // small reads come as one buffer each: 32 × 256 KiB
      for (let i = 0; i < 32; i++) {
        read += (await provider.readBytes("object", { offset: i * 262144, length: 262144 })).byteLength;
      }
      console.log(JSON.stringify({ written, streamed, total: collections, read }));
    `;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["eval", V8_FLAGS, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(output.stderr), "");
    const result = JSON.parse(new TextDecoder().decode(output.stdout));
    const perDirection = 24 * MiB / BYTES_PER_COLLECTION;
    assertEquals(result.read, 24 * MiB + 8 * MiB);
    assertEquals(result.written, perDirection);
    assertEquals(result.streamed, 2 * perDirection);
    assertEquals(result.total, 2 * perDirection + 8 * MiB / BYTES_PER_COLLECTION);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
