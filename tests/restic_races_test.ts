// restic object races, made deterministic in-process: a provider that lets the test act at the
// exact moment between two steps of a request (an upload's commit failing with "Exists" and the
// comparison read that follows), so a DELETE lands in that gap every run.

import { createHandler, MemoryProvider, StowageError } from "../mod.ts";
import type { BeginOptions, ByteRange, Upload } from "../src/storage/provider.ts";
import { assertEquals } from "./_assert.ts";
import { randomBytes, sha256Hex } from "./_server.ts";

const ORIGIN = "http://stowage.test";

/** A MemoryProvider that calls `onCommitExists` when a commit finds its key taken, and reads late. */
class GappedProvider extends MemoryProvider {
  onCommitExists: (() => void) | null = null;
  readDelayMs = 0;

  override async begin(key: string, options?: BeginOptions): Promise<Upload> {
    const upload = await super.begin(key, options);
    const commit = async (commitOptions: { replace: boolean }) => {
      try {
        await upload.commit(commitOptions);
      } catch (error) {
        if (error instanceof StowageError && error.kind === "Exists") this.onCommitExists?.();
        throw error;
      }
    };
    return {
      writable: upload.writable,
      written: () => upload.written(),
      commit,
      abort: () => upload.abort(),
    };
  }

  override async read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>> {
    if (this.readDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.readDelayMs));
    return await super.read(key, range);
  }
}

/** A request body the test closes when it wants the upload to finish. */
function heldBody(bytes: Uint8Array): { stream: ReadableStream<Uint8Array>; finish: () => void } {
  let finish!: () => void;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes.slice());
      finish = () => controller.close();
    },
  });
  return { stream, finish };
}

Deno.test("restic: a DELETE between a losing upload's commit and its comparison waits its turn", async () => {
  const provider = new GappedProvider();
  const handler = createHandler({ provider, log: () => {} });
  await handler.ready;
  const call = (method: string, path: string, body?: ReadableStream<Uint8Array>) =>
    handler(new Request(ORIGIN + path, { method, body, duplex: "half" } as RequestInit));
  assertEquals((await call("POST", "/repo/?create=true")).status, 200);

  const blob = randomBytes(100_000);
  const id = sha256Hex(blob);
  const path = `/repo/data/${id}`;
  // Two uploads of the same ID stream at once; both started while the ID was free.
  const first = heldBody(blob);
  const second = heldBody(blob);
  const firstReply = call("POST", path, first.stream);
  const secondReply = call("POST", path, second.stream);
  await new Promise((resolve) => setTimeout(resolve, 20));

  first.finish();
  assertEquals((await firstReply).status, 200);
  // The second commit finds the ID taken: a DELETE of it starts right then, and the comparison
  // read of the second upload is slow. The DELETE must not remove the object under that read.
  let deleteReply: Promise<Response> | null = null;
  provider.onCommitExists = () => (deleteReply ??= call("DELETE", path));
  provider.readDelayMs = 50;
  second.finish();
  const secondResponse = await secondReply;
  assertEquals([secondResponse.status, await secondResponse.text()], [200, ""]);
  assertEquals((await deleteReply!).status, 200, "the DELETE ran once the upload had answered");
  provider.readDelayMs = 0;
  assertEquals((await call("GET", path)).status, 404);

  // Afterwards the ID is free again and an upload stores it normally.
  const again = heldBody(blob);
  const againReply = call("POST", path, again.stream);
  again.finish();
  assertEquals((await againReply).status, 200);
  const stored = new Uint8Array(await (await call("GET", path)).arrayBuffer());
  assertEquals(sha256Hex(stored), id);
});
