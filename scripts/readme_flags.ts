// `deno task docs`: rewrites the flag tables in README.md from the CLI definitions (between the
// `<!-- flags:NAME -->` markers), so the reference cannot drift; tests/readme_test.ts compares.

import { renderMarkdown } from "../src/cli/flags.ts";
import type { FlagSpec } from "../src/cli/flags.ts";
import { BORGSTORE_FLAGS } from "../src/cli/borgstore_config.ts";
import { SERVE_FLAGS } from "../src/cli/serve_config.ts";
import { RESTIC_STDIO_FLAGS, SSH_FLAGS } from "../src/stdio_servers.ts";

export const FLAG_TABLES: Record<string, FlagSpec[]> = {
  "serve": SERVE_FLAGS,
  "borgstore-server-rest": BORGSTORE_FLAGS,
  "serve-restic": RESTIC_STDIO_FLAGS,
  "ssh": SSH_FLAGS,
};

/** README text with every flag block replaced by the current table. */
export function withFlagTables(readme: string): string {
  let out = readme;
  for (const [name, flags] of Object.entries(FLAG_TABLES)) {
    const open = `<!-- flags:${name} -->\n`;
    const close = `<!-- /flags:${name} -->`;
    const start = out.indexOf(open);
    const end = out.indexOf(close);
    if (start < 0 || end < start) throw new Error(`README.md has no flags:${name} block`);
    out = out.slice(0, start + open.length) + renderMarkdown(flags) + "\n" + out.slice(end);
  }
  return out;
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  await Deno.writeTextFile(path, withFlagTables(await Deno.readTextFile(path)));
  console.log("README.md flag tables updated");
}
