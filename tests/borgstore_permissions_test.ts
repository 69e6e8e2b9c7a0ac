// BorgStore permissions: every shortcut (the four `borgbackup-*` of borgstore-server-rest and the
// four modes of `borg serve --rest`) × every operation in every namespace → the exact status;
// a denied operation must leave the store byte-for-byte unchanged. The expected letters per
// namespace are written out here independently of src/policy/permissions.ts.

import { assertEquals, assertNotEquals } from "./_assert.ts";
import { call, snapshot, startServer, type TestServer } from "./borgstore_helpers.ts";
import { checkPermission, isPermitted, parsePermissions } from "../src/policy/permissions.ts";
import { StowageError } from "../src/errors.ts";

const NAMESPACES = [
  "config",
  "keys",
  "locks",
  "archives",
  "data",
  "packs",
  "index",
  "cache",
  "other",
];

/** Letters each shortcut grants per top-level namespace ("" = root), from spec §6.6/§6.7. */
const ALL = "lrwWD";
const EXPECTED_LETTERS: Record<string, Record<string, string>> = {
  "borgbackup-all": Object.fromEntries(["", ...NAMESPACES].map((ns) => [ns, ALL])),
  "all": Object.fromEntries(["", ...NAMESPACES].map((ns) => [ns, ALL])),
  "borgbackup-no-delete": {
    "": "lr",
    config: "lrW",
    keys: "lr",
    locks: "lrwD",
    archives: "lrw",
    data: "lrw",
    packs: "lr",
    index: "lr",
    cache: "lrwWD",
    other: "lr",
  },
  "borgbackup-write-only": {
    "": "l",
    config: "lrW",
    keys: "lr",
    locks: "lrwD",
    archives: "lw",
    data: "lw",
    packs: "l",
    index: "l",
    cache: "lrwWD",
    other: "l",
  },
  "borgbackup-read-only": {
    "": "lr",
    config: "lr",
    keys: "lr",
    locks: "lrwD",
    archives: "lr",
    data: "lr",
    packs: "lr",
    index: "lr",
    cache: "lr",
    other: "lr",
  },
  "no-delete": {
    "": "lr",
    config: "lrW",
    keys: "lr",
    locks: "lrwD",
    archives: "lrw",
    data: "lr",
    packs: "lrw",
    index: "lrwWD",
    cache: "lrwWD",
    other: "lr",
  },
  "write-only": {
    "": "l",
    config: "lrW",
    keys: "lr",
    locks: "lrwD",
    archives: "lw",
    data: "l",
    packs: "lw",
    index: "lrwWD",
    cache: "lrwWD",
    other: "l",
  },
  "read-only": {
    "": "lr",
    config: "lr",
    keys: "lr",
    locks: "lrwD",
    archives: "lr",
    data: "lr",
    packs: "lr",
    index: "lr",
    cache: "lr",
    other: "lr",
  },
};

/** Store content before every operation: two items and an empty directory per namespace. */
async function resetStore(root: string): Promise<void> {
  await Deno.remove(root, { recursive: true }).catch(() => {});
  await Deno.mkdir(root);
  for (const ns of NAMESPACES) {
    await Deno.mkdir(`${root}/${ns}/00/emptydir`, { recursive: true });
    await Deno.writeTextFile(`${root}/${ns}/00/item`, `content of ${ns}`);
    await Deno.writeTextFile(`${root}/${ns}/00/existing`, "old");
  }
}

/** Resets the store and returns its snapshot. */
async function prepare(root: string): Promise<string> {
  await resetStore(root);
  return (await snapshot(root)).join("\n");
}

function allowed(letters: string, anyOf: string): boolean {
  return [...anyOf].some((letter) => letters.includes(letter));
}

interface Operation {
  label: string;
  /** Required letters (any of) on the namespace; several groups must all be satisfied. */
  needs: string[];
  status: number;
  run: (server: TestServer) => ReturnType<typeof call>;
}

function namespaceOperations(ns: string): Operation[] {
  const item = `${ns}/00/item`;
  return [
    { label: "list", needs: ["l"], status: 200, run: (s) => call(s, "GET", `/${ns}/00/`) },
    { label: "load", needs: ["r"], status: 200, run: (s) => call(s, "GET", `/${item}`) },
    {
      label: "load range",
      needs: ["r"],
      status: 206,
      run: (s) => call(s, "GET", `/${item}`, { headers: { range: "bytes=0-3" } }),
    },
    { label: "info", needs: ["lr"], status: 200, run: (s) => call(s, "HEAD", `/${item}`) },
    { label: "info missing", needs: ["lr"], status: 404, run: (s) => call(s, "HEAD", `/${ns}/x`) },
    {
      label: "store new",
      needs: ["wW"],
      status: 200,
      run: (s) => call(s, "POST", `/${ns}/00/new`, { body: "new" }),
    },
    {
      label: "overwrite",
      needs: ["W"],
      status: 200,
      run: (s) => call(s, "POST", `/${item}`, { body: "changed" }),
    },
    {
      label: "identical retry",
      needs: ["wW"],
      status: 200,
      run: (s) => call(s, "POST", `/${item}`, { body: `content of ${ns}` }),
    },
    { label: "delete", needs: ["D"], status: 200, run: (s) => call(s, "DELETE", `/${item}`) },
    {
      label: "delete missing",
      needs: ["D"],
      status: 404,
      run: (s) => call(s, "DELETE", `/${ns}/00/missing`),
    },
    {
      label: "soft delete (move)",
      needs: ["D", "wW"],
      status: 200,
      run: (s) => call(s, "POST", `/?cmd=move&current=${item}&new=${item}.del`),
    },
    {
      label: "move onto existing",
      needs: ["D", "W"],
      status: 200,
      run: (s) => call(s, "POST", `/?cmd=move&current=${item}&new=${ns}/00/existing`),
    },
    { label: "hash", needs: ["r"], status: 200, run: (s) => call(s, "POST", `/${item}?cmd=hash`) },
    {
      label: "mkdir",
      needs: ["w"],
      status: 200,
      run: (s) => call(s, "POST", `/${ns}/00/sub?cmd=mkdir`),
    },
    {
      label: "rmdir",
      needs: ["wD"],
      status: 200,
      run: (s) => call(s, "DELETE", `/${ns}/00/emptydir?cmd=rmdir`),
    },
    {
      label: "defrag to target",
      needs: ["W", "r"],
      status: 200,
      run: (s) =>
        call(s, "POST", `/?cmd=defrag&target=${ns}/00/merged`, { body: `[["${item}", 0, 4]]` }),
    },
  ];
}

/** Root-level operations: expected status for a map without (null) and with restrictions. */
const ROOT_OPERATIONS: { label: string; needs: string[]; status: number; run: Operation["run"] }[] =
  [
    { label: "create", needs: ["wW"], status: 409, run: (s) => call(s, "POST", "/?cmd=create") },
    { label: "info root", needs: ["lr"], status: 200, run: (s) => call(s, "HEAD", "/") },
    { label: "list root", needs: ["l"], status: 200, run: (s) => call(s, "GET", "/") },
    { label: "quota", needs: [], status: 200, run: (s) => call(s, "POST", "/?cmd=quota") },
    {
      label: "destroy",
      needs: ["D"],
      status: 200,
      run: (s) => call(s, "DELETE", "/?cmd=destroy"),
    },
  ];

for (const shortcut of Object.keys(EXPECTED_LETTERS)) {
  Deno.test(`permissions ${shortcut}: every operation`, async (t) => {
    const server = await startServer({ permissions: parsePermissions(shortcut) });
    const letters = EXPECTED_LETTERS[shortcut];
    let fixture = await prepare(server.root);
    const attempt = async (label: string, needs: string[], ns: string, op: Operation) => {
      const permitted = needs.every((anyOf) => allowed(letters[ns], anyOf));
      const result = await op.run(server);
      const expected = permitted ? op.status : 403;
      assertEquals(result.status, expected, `${shortcut} ${label}: ${result.text}`);
      const after = (await snapshot(server.root)).join("\n");
      if (!permitted) assertEquals(after, fixture, `${shortcut} ${label} changed the store`);
      if (after !== fixture) fixture = await prepare(server.root);
    };
    try {
      await t.step("root operations", async () => {
        for (const op of ROOT_OPERATIONS) await attempt(op.label, op.needs, "", op);
      });
      for (const ns of NAMESPACES) {
        await t.step(`namespace ${ns}`, async () => {
          for (const op of namespaceOperations(ns)) {
            await attempt(`${op.label} in ${ns}`, op.needs, ns, op);
          }
        });
      }
      await t.step("borg compact defrag (namespace=packs, levels=1)", async () => {
        const permitted = allowed(letters["packs"], "W") && allowed(letters["packs"], "r");
        const before = await snapshot(server.root);
        const result = await call(
          server,
          "POST",
          "/?cmd=defrag&algorithm=sha256&namespace=packs&levels=1",
          {
            body: '[["packs/00/item", 0, 7]]',
          },
        );
        assertEquals(result.status, permitted ? 200 : 403, result.text);
        if (!permitted) assertEquals(await snapshot(server.root), before);
        else assertNotEquals(await snapshot(server.root), before);
      });
    } finally {
      await server.close();
    }
  });
}

Deno.test("hierarchical first-match lookup (spec §6.3)", () => {
  const map = { "": "l", "data": "lrw", "data/special": "r", "dat": "D" };
  assertEquals(isPermitted(map, "data/special/x", "r"), true);
  assertEquals(isPermitted(map, "data/special/x", "w"), false); // the longer prefix removes w
  assertEquals(isPermitted(map, "data/x", "w"), true);
  assertEquals(isPermitted(map, "datax/y", "D"), false); // whole segments only: falls to ""
  assertEquals(isPermitted(map, "other", "l"), true);
  assertEquals(isPermitted({ "data": "lrwWD" }, "other", "l"), false); // no candidate → denied
  assertEquals(isPermitted({ "data/": "lrwWD", "": "" }, "data/x", "r"), false);
  assertEquals(isPermitted(null, "x", "D"), true);
  assertEquals(isPermitted({}, "x", "D"), true);
  try {
    checkPermission(map, "data/x", "WD");
    throw new Error("expected Forbidden");
  } catch (error) {
    assertEquals((error as StowageError).kind, "Forbidden");
    assertEquals((error as Error).message, "One of permissions 'WD' required for 'data/x'");
  }
});

Deno.test("parsePermissions: shortcuts, modes, JSON, rejects", () => {
  assertEquals(parsePermissions("borgbackup-all"), null);
  assertEquals(parsePermissions("all"), null);
  assertEquals(parsePermissions("null"), null);
  assertEquals(parsePermissions('{"": "lr", "a": ""}'), { "": "lr", "a": "" });
  assertEquals(parsePermissions("read-only"), { "": "lr", "locks": "lrwD" });
  for (const bad of ["bogus", "[]", '"lr"', '{"": 5}', '{"": "lrx"}', "{", "42"]) {
    let message = "";
    try {
      parsePermissions(bad);
    } catch (error) {
      message = (error as Error).message;
    }
    assertEquals(message.startsWith(`Invalid --permissions value: '${bad}'.`), true, bad);
    assertEquals(message.includes("no-delete, write-only, read-only"), true, message);
  }
  // Returned maps are copies: changing one does not change the shortcut.
  const map = parsePermissions("borgbackup-no-delete")!;
  map["data"] = "";
  assertEquals(parsePermissions("borgbackup-no-delete")!["data"], "lrw");
});
