// `deno task bundle`: builds dist/stowage.js, one self-contained JavaScript file with every
// dependency inlined (bcryptjs, hash-wasm and deno.json included), that runs offline with
//
//   deno run --no-remote --allow-read --allow-write --allow-net --allow-env --allow-sys \
//     dist/stowage.js serve --path DIR …
//
// `deno bundle` fetches esbuild from the npm registry the first time. After bundling, the output
// is verified: its only import specifiers are Deno's built-in `node:` modules, and it prints its
// version when run with --no-remote --no-npm from an empty directory.

import meta from "../deno.json" with { type: "json" };
import { PERMISSIONS } from "./compile.ts";

export const OUTPUT = "dist/stowage.js";

const OFFLINE =
  /error sending request|dns error|failed to lookup|connection refused|network|download/i;

/** Every module specifier of static imports, re-exports, dynamic imports and require calls. */
export function importSpecifiers(code: string): string[] {
  const patterns = [
    /^\s*import\s+(?:[\w$*{}\s,]+\s+from\s+)?["']([^"']+)["']/gm,
    /^\s*export\s+(?:\*|\{[^}]*\})(?:\s+as\s+[\w$]+)?\s+from\s+["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  const found = new Set<string>();
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) found.add(match[1]);
  }
  return [...found].sort();
}

/** Specifiers that would need the network, a package cache or a file next to the bundle. */
export function externalSpecifiers(code: string): string[] {
  return importSpecifiers(code).filter((s) => !s.startsWith("node:"));
}

function fail(message: string): never {
  console.error(`bundle: ${message}`);
  Deno.exit(1);
}

async function run(args: string[], cwd?: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
}

async function bundle(): Promise<void> {
  await Deno.mkdir("dist", { recursive: true });
  const temp = `${OUTPUT}.partial.js`;
  const result = await run([
    "bundle",
    "--quiet",
    "--platform",
    "deno",
    "--packages",
    "bundle",
    "--output",
    temp,
    "main.ts",
  ]);
  if (!result.success) {
    await Deno.remove(temp).catch(() => {});
    const text = new TextDecoder().decode(result.stderr).trim();
    if (OFFLINE.test(text)) {
      fail("cannot download esbuild from the npm registry (offline?); run it with network once");
    }
    fail(`deno bundle failed:\n${text}`);
  }
  const code = await Deno.readTextFile(temp);
  const external = externalSpecifiers(code);
  if (external.length > 0) {
    await Deno.remove(temp);
    fail(`the bundle still imports ${external.join(", ")}`);
  }
  const header = `#!/usr/bin/env -S deno run --no-remote ${PERMISSIONS.join(" ")}\n` +
    `// stowage ${meta.version}, bundled by scripts/bundle.ts from main.ts; ` +
    `run: deno run --no-remote ${PERMISSIONS.join(" ")} stowage.js serve --path DIR …\n`;
  await Deno.writeTextFile(temp, header + code.replace(/^#![^\n]*\n/, ""));
  if (Deno.build.os !== "windows") await Deno.chmod(temp, 0o755);
  await Deno.rename(temp, OUTPUT);
}

/** Runs the bundle from an empty directory, offline, and checks that it prints its version. */
async function smokeTest(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "stowage-bundle-" });
  try {
    const result = await run(
      [
        "run",
        "--no-remote",
        "--no-npm",
        "--no-config",
        ...PERMISSIONS,
        Deno.realPathSync(OUTPUT),
        "--version",
      ],
      dir,
    );
    const out = new TextDecoder().decode(result.stdout).trim();
    if (!result.success || out !== `stowage ${meta.version}`) {
      fail(
        `${OUTPUT} --version printed "${out}" (exit ${result.code}):\n` +
          new TextDecoder().decode(result.stderr),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  await bundle();
  await smokeTest();
  const size = (await Deno.stat(OUTPUT)).size;
  console.log(`built ${OUTPUT} (${(size / 1024).toFixed(0)} KiB), stowage ${meta.version}`);
}
