// MemoryProvider: the shared provider contract plus its root-existence option; readBody.

import { MemoryProvider } from "../src/storage/memory.ts";
import { BYTES_BODY_LIMIT, readBody, SMALL_READ_LIMIT } from "../src/storage/provider.ts";
import { assert, assertEquals } from "./_assert.ts";
import { entries, expectKind, getText, providerContract, put } from "./_provider_contract.ts";

providerContract(
  "memory",
  () => Promise.resolve({ provider: new MemoryProvider(), cleanup: () => Promise.resolve() }),
);

Deno.test("memory: a missing root appears on first write and goes with removeTree", async () => {
  const provider = new MemoryProvider({ rootExists: false });
  assertEquals(await provider.stat(""), null);
  await expectKind(() => entries(provider, ""), "NotFound");
  await put(provider, "a/b", "v");
  assertEquals(await getText(provider, "a/b"), "v");
  assertEquals((await provider.stat(""))?.isDirectory, true);
  await provider.removeTree("");
  assertEquals(await provider.stat(""), null);
  assertEquals(await provider.stat("a/b"), null);
});

Deno.test("memory: providers are independent", async () => {
  const one = new MemoryProvider();
  const two = new MemoryProvider();
  await put(one, "k", "one");
  assertEquals(await two.stat("k"), null);
});

Deno.test("readBody: one buffer for small reads (also above the bytes limit), a stream above the read limit, never a short body", async () => {
  const provider = new MemoryProvider();
  await put(provider, "small", "four");
  await put(provider, "big", new Uint8Array(SMALL_READ_LIMIT + 1));
  const small = await readBody(provider, "small", undefined, 4);
  assert(small instanceof Uint8Array);
  assertEquals(new TextDecoder().decode(small), "four");
  const range = await readBody(provider, "small", { offset: 1, length: 2 }, 2);
  assertEquals(new TextDecoder().decode(range as Uint8Array), "ou");
  const big = await readBody(provider, "big", undefined, SMALL_READ_LIMIT + 1);
  assert(big instanceof ReadableStream);
  await big.cancel();
  // above BYTES_BODY_LIMIT a small read is still one buffer (held beside the Response; see
  // held_body_test.ts for how other consumers get it), still checked for its length
  const piece = await readBody(
    provider,
    "big",
    { offset: 0, length: BYTES_BODY_LIMIT + 1 },
    BYTES_BODY_LIMIT + 1,
  );
  assert(piece instanceof Uint8Array);
  assertEquals(piece.byteLength, BYTES_BODY_LIMIT + 1);
  await expectKind(
    () =>
      readBody(
        provider,
        "small",
        { offset: 0, length: BYTES_BODY_LIMIT + 1 },
        BYTES_BODY_LIMIT + 1,
      ),
    "Internal",
  );
  // the object changed between the caller's stat and the read: an error, not 3 of 4 bytes
  await put(provider, "small", "one");
  await expectKind(() => readBody(provider, "small", undefined, 4), "Internal");
});
