// The README's flag reference is generated from the CLI definition; this test keeps them equal,
// and checks that the two README commands are the ones deno.json provides.

import { assert, assertEquals } from "./_assert.ts";
import { renderMarkdown } from "../src/cli/flags.ts";
import { FLAG_TABLES } from "../scripts/readme_flags.ts";
import meta from "../deno.json" with { type: "json" };

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));

function block(name: string): string {
  const start = README.indexOf(`<!-- flags:${name} -->\n`);
  const end = README.indexOf(`<!-- /flags:${name} -->`);
  assert(start >= 0 && end > start, `README has no flags:${name} block`);
  return README.slice(start + `<!-- flags:${name} -->\n`.length, end).trim();
}

/** Markdown tables compared cell by cell (deno fmt pads columns). */
function normalizeTable(table: string): string[][] {
  return table.trim().split("\n").map((line) =>
    line.split("|").map((cell) => cell.trim()).map((cell) => /^-+$/.test(cell) ? "-" : cell)
  );
}

Deno.test("README: every flag table matches the CLI definition", () => {
  for (const [name, flags] of Object.entries(FLAG_TABLES)) {
    assertEquals(normalizeTable(block(name)), normalizeTable(renderMarkdown(flags)), name);
  }
});

Deno.test("README: the two commands exist as tasks", () => {
  assert(README.includes("npx -y deno@2.9.6 task start"));
  assert(README.includes("npx -y deno@2.9.6 task test"));
  assert("start" in meta.tasks && "test" in meta.tasks);
  assert(meta.tasks.start.includes("--no-auth") && meta.tasks.start.includes("--path"));
});
