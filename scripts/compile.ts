// `deno task compile`: builds self-contained stowage executables for every supported OS into
// dist/, with the narrow permission set the server needs and the version from deno.json.
// `deno compile` downloads a Deno runtime per target; on an offline machine this script stops
// with one clear line instead of a wall of network errors.
//
//   deno task compile                      # all targets
//   deno task compile x86_64-unknown-linux-gnu

import meta from "../deno.json" with { type: "json" };

export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/** What the server needs at run time: files, sockets, env (config), OS info (memory, fds). */
export const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];

/**
 * V8 flags baked into the executables (and used by the tasks and the benchmark): a 4 MiB young
 * generation lowers the resident set of request-heavy load (HEAD, small GETs and uploads: about
 * 160 → 95–115 MiB in the bench workloads) at no throughput cost, and `--expose-gc` lets
 * src/gc_hint.ts collect the buffers of large transfers early (a 1 GiB upload or download peaks
 * at about 80 MiB instead of 130).
 */
export const V8_FLAGS = "--v8-flags=--max-semi-space-size=4,--expose-gc";

const OFFLINE =
  /error sending request|dns error|failed to lookup|connection refused|network|download/i;

export function outputName(target: string): string {
  return `dist/stowage-${meta.version}-${target}${target.includes("windows") ? ".exe" : ""}`;
}

async function compile(target: string): Promise<void> {
  const output = outputName(target);
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["compile", ...PERMISSIONS, V8_FLAGS, "--target", target, "--output", output, "main.ts"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.success) {
    console.log(`built ${output}`);
    return;
  }
  const text = new TextDecoder().decode(result.stderr);
  if (OFFLINE.test(text)) {
    console.error(
      `compile: cannot download the Deno runtime for ${target} (this machine is offline); ` +
        `run \`deno task compile\` on a machine with internet access`,
    );
  } else {
    console.error(`compile: deno compile failed for ${target}:\n${text.trim()}`);
  }
  Deno.exit(1);
}

if (import.meta.main) {
  const wanted = Deno.args.length > 0 ? Deno.args : [...TARGETS];
  for (const target of wanted) {
    if (!(TARGETS as readonly string[]).includes(target)) {
      console.error(`compile: unknown target ${target}; known: ${TARGETS.join(", ")}`);
      Deno.exit(2);
    }
  }
  await Deno.mkdir("dist", { recursive: true });
  for (const target of wanted) await compile(target);
}
