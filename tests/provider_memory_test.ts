// MemoryProvider: the shared provider contract plus its root-existence option.

import { MemoryProvider } from "../src/storage/memory.ts";
import { assertEquals } from "./_assert.ts";
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
