// PrefixProvider: the shared provider contract over a MemoryProvider and over an FsProvider, plus
// what a scoped view adds: nothing outside the prefix is visible or reachable, and the prefix
// directory itself behaves as the root (absent until the first write, removable).

import { FsProvider } from "../src/storage/fs.ts";
import { MemoryProvider } from "../src/storage/memory.ts";
import { PrefixProvider } from "../src/storage/prefixed.ts";
import { StowageError } from "../src/errors.ts";
import { assertEquals, assertThrows } from "./_assert.ts";
import {
  entries,
  expectKind,
  getText,
  names,
  providerContract,
  put,
} from "./_provider_contract.ts";

const PREFIX = "tenant/store";

providerContract("prefixed memory", async () => {
  const base = new MemoryProvider();
  await base.mkdir(PREFIX);
  return { provider: new PrefixProvider(base, PREFIX), cleanup: () => Promise.resolve() };
});

providerContract("prefixed fs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-prefixed-test-" });
  await Deno.mkdir(`${dir}/root/${PREFIX}`, { recursive: true });
  const base = new FsProvider(`${dir}/root`);
  return {
    provider: new PrefixProvider(base, PREFIX),
    rootPath: `${dir}/root/${PREFIX}`,
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
});

Deno.test("prefixed: keys map below the prefix and nothing else is reachable", async () => {
  const base = new MemoryProvider();
  await put(base, "outside", "secret");
  await put(base, "tenant/other/x", "neighbour");
  const view = new PrefixProvider(base, PREFIX);
  await put(view, "a/b", "inside");
  assertEquals(await getText(base, `${PREFIX}/a/b`), "inside");
  assertEquals(await names(view, ""), ["a"]);
  assertEquals(await view.stat("outside"), null);
  for (const escape of ["../outside", "../../outside", "..", "/outside", "a/../../x"]) {
    await expectKind(() => view.stat(escape), "BadRequest");
    await expectKind(() => view.read(escape), "BadRequest");
    await expectKind(() => view.begin(escape), "BadRequest");
  }
  await expectKind(() => view.begin(""), "BadRequest");
  await view.removeTree("");
  assertEquals(await view.stat(""), null);
  assertEquals(await getText(base, "outside"), "secret");
  assertEquals(await getText(base, "tenant/other/x"), "neighbour");
});

Deno.test("prefixed: the prefix is the root: absent until created, mkdir and rmdir of it", async () => {
  const base = new MemoryProvider();
  const view = new PrefixProvider(base, "s");
  assertEquals(await view.stat(""), null);
  await expectKind(() => entries(view, ""), "NotFound");
  await view.mkdir("");
  assertEquals((await view.stat(""))?.isDirectory, true);
  assertEquals(await entries(view, ""), []);
  await view.rmdir("");
  assertEquals(await base.stat("s"), null);
});

Deno.test("prefixed: an empty prefix is the provider itself; an unsafe prefix is refused", async () => {
  const base = new MemoryProvider();
  await put(base, "k", "v");
  const view = new PrefixProvider(base, "");
  assertEquals(await getText(view, "k"), "v");
  assertEquals(view.description, base.description);
  for (const bad of ["..", "a/../b", "/abs", "a//b", "a\\b"]) {
    assertThrows(
      () => new PrefixProvider(base, bad),
      (e) => e instanceof StowageError && e.kind === "BadRequest",
    );
  }
});
