// The benchmark's command line and result table (scripts/bench/): options parse as documented,
// and the ceiling columns appear only when the ceiling server was measured.

import { parseOptions, UsageError } from "../scripts/bench/config.ts";
import { Results } from "../scripts/bench/report.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

Deno.test("bench options: defaults, --no-ceiling, --only, --dir, bad arguments", () => {
  const defaults = parseOptions([])!;
  assertEquals([defaults.runs, defaults.quick, defaults.reference, defaults.ceiling], [
    3,
    false,
    true,
    true,
  ]);
  // 16 concurrent 1 GiB uploads run only when asked for
  assert(!defaults.only.has("upload-1g-c16") && defaults.only.has("upload-1g"));
  assert(parseOptions(["--only", "upload-1g-c16"])!.only.has("upload-1g-c16"));
  const chosen = parseOptions(["--no-ceiling", "--only", "head,get-small", "--runs=2"])!;
  assertEquals(chosen.ceiling, false);
  assertEquals(chosen.runs, 2);
  assertEquals([...chosen.only], ["head", "get-small"]);
  assertEquals(defaults.dir, undefined);
  assertEquals(parseOptions(["--dir", "/srv/backups"])!.dir, "/srv/backups");
  assertThrows(() => parseOptions(["--dir"]), (e) => e instanceof UsageError);
  assertEquals(parseOptions(["--help"]), null);
  assertThrows(() => parseOptions(["--only", "nonsense"]), (e) => e instanceof UsageError);
  assertThrows(() => parseOptions(["--runs", "0"]), (e) => e instanceof UsageError);
  assertThrows(() => parseOptions(["--ceiling"]), (e) => e instanceof UsageError);
});

Deno.test("bench table: medians and ratios; ceiling columns only when measured", () => {
  const plain = new Results();
  plain.add("stowage", "HEAD", "req/s", 100);
  plain.add("stowage", "HEAD", "req/s", 300);
  plain.add("stowage", "HEAD", "req/s", 200);
  plain.add("reference", "HEAD", "req/s", 400);
  const plainTable = plain.table();
  assert(!plainTable.includes("ceiling"), plainTable);
  assert(/HEAD +\| +200 req\/s \| +400 req\/s \| +0\.50/.test(plainTable), plainTable);

  const withCeiling = new Results();
  withCeiling.add("stowage", "HEAD", "req/s", 200);
  withCeiling.add("reference", "HEAD", "req/s", 400);
  withCeiling.add("ceiling", "HEAD", "req/s", 800);
  withCeiling.add("stowage", "list", "ms", 90);
  const lines = withCeiling.table().split("\n");
  assert(/\| +ceiling \| +of ceiling$/.test(lines[0]), lines[0]);
  assert(/HEAD .*\| +800 req\/s \| +0\.25$/.test(lines[2]), lines[2]);
  // a row without a ceiling figure keeps its cells empty, and its width
  assertEquals(lines[3].length, lines[2].length);
  assert(/list .*90\.0 ms .*\|\s+\|\s+$/.test(lines[3]), lines[3]);
});
