// The single-file bundle (scripts/bundle.ts → dist/stowage.js, or the file named by
// STOWAGE_BUNDLE): no import left but Deno's node: built-ins, runs offline with the narrow
// permission set (--no-remote --no-npm, an empty DENO_DIR, no config file), htpasswd bcrypt auth
// (bcryptjs inlined), a borg BLAKE3 hash (hash-wasm inlined), and the restic cycle: init, backup
// of a generated tree with a 0-byte file, check --read-data, restore + compare, forget --prune.
// Ignored when there is no bundle, except with STOWAGE_REQUIRE_PEERS=1, where it fails.

import bcrypt from "bcryptjs";
import { blake3 } from "hash-wasm";
import meta from "../deno.json" with { type: "json" };
import { externalSpecifiers } from "../scripts/bundle.ts";
import { PERMISSIONS } from "../scripts/compile.ts";
import { assert, assertEquals } from "./_assert.ts";
import { onPath } from "./_peers.ts";
import { randomBytes, treeSnapshot } from "./_server.ts";
import { resticOk } from "./_restic.ts";

const BUNDLE = Deno.env.get("STOWAGE_BUNDLE") ||
  new URL("../dist/stowage.js", import.meta.url).pathname;
const REQUIRED = Deno.env.get("STOWAGE_REQUIRE_PEERS") === "1";

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

const HAVE_BUNDLE = exists(BUNDLE);
const HAVE_RESTIC = onPath("restic");

function requireBundle(): void {
  if (!HAVE_BUNDLE) {
    throw new Error(
      `no bundle at ${BUNDLE}: run \`deno task bundle\` first (or set STOWAGE_BUNDLE)`,
    );
  }
}

/** `deno run` arguments for the bundle: offline, no config, no --allow-all. */
function runArgs(args: string[]): string[] {
  return ["run", "--no-remote", "--no-npm", "--no-config", ...PERMISSIONS, BUNDLE, ...args];
}

Deno.test({
  name: "bundle: only node: imports remain; --version runs offline from an empty directory",
  ignore: !HAVE_BUNDLE && !REQUIRED,
  async fn() {
    requireBundle();
    assertEquals(externalSpecifiers(await Deno.readTextFile(BUNDLE)), []);
    const cwd = await Deno.makeTempDir({ prefix: "stowage-bundle-test-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: runArgs(["--version"]),
        cwd,
        env: { DENO_DIR: `${cwd}/deno-dir` },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const decoder = new TextDecoder();
      assertEquals(out.code, 0, decoder.decode(out.stderr));
      assertEquals(decoder.decode(out.stdout).trim(), `stowage ${meta.version}`);
    } finally {
      await Deno.remove(cwd, { recursive: true });
    }
  },
});

interface BundleServer {
  url: string;
  stop(): Promise<number>;
}

/** Starts `stowage.js serve` and waits for its `start server on` line (bounded). */
async function startBundle(work: string, args: string[]): Promise<BundleServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: runArgs(["serve", ...args, "--listen", "127.0.0.1:0"]),
    cwd: work,
    env: { DENO_DIR: `${work}/deno-dir` },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let match: RegExpMatchArray | null = null;
  while (!(match = text.match(/start server on [^\n]*:(\d+)\n/))) {
    const { value, done } = await reader.read();
    if (done) {
      clearTimeout(timer);
      await child.status;
      throw new Error(`the bundle exited before listening:\n${text}`);
    }
    text += value;
  }
  clearTimeout(timer);
  const drain = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    url: `http://127.0.0.1:${match[1]}`,
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      await drain.catch(() => {});
      return status.code;
    },
  };
}

async function makeTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
  await Deno.writeFile(`${root}/empty`, new Uint8Array());
  await Deno.writeFile(`${root}/sub/large.bin`, randomBytes(4 * 1024 * 1024));
  for (let i = 0; i < 40; i++) {
    const dir = i % 2 === 0 ? "sub" : "sub/deeper";
    await Deno.writeFile(`${root}/${dir}/file-${i}.bin`, randomBytes(1 + (i * 211) % 7000));
  }
  await Deno.writeTextFile(`${root}/readme.txt`, "bundled\n".repeat(100));
}

Deno.test({
  name: "bundle: restic cycle and a borg BLAKE3 hash against the bundled server with bcrypt auth",
  ignore: (!HAVE_BUNDLE || !HAVE_RESTIC) && !REQUIRED,
  async fn() {
    requireBundle();
    assert(HAVE_RESTIC, "restic is not installed");
    const work = await Deno.makeTempDir({ prefix: "stowage-bundle-test-" });
    await Deno.mkdir(`${work}/data`);
    await Deno.writeTextFile(`${work}/data/.htpasswd`, `alice:${bcrypt.hashSync("secret", 4)}\n`);
    const server = await startBundle(work, ["--path", "data", "--private-repos"]);
    let stopped = false;
    try {
      const base = server.url.replace("http://", "http://alice:secret@");
      const wrong = await fetch(`${server.url}/alice/r/config`, {
        headers: { authorization: `Basic ${btoa("alice:wrong")}` },
      });
      await wrong.body?.cancel();
      assertEquals(wrong.status, 401);

      const repo = `rest:${base}/alice/laptop/`;
      const source = `${work}/source`;
      await makeTree(source);
      await resticOk(repo, ["init"]);
      await resticOk(repo, ["backup", source]);
      await Deno.writeTextFile(`${source}/later.txt`, "second backup\n");
      await resticOk(repo, ["backup", source]);
      await resticOk(repo, ["check", "--read-data"]);
      await resticOk(repo, ["restore", "latest", "--target", `${work}/restore`]);
      assertEquals(await treeSnapshot(`${work}/restore${source}`), await treeSnapshot(source));
      await resticOk(repo, ["forget", "--keep-last", "1", "--prune"]);
      assertEquals(JSON.parse(await resticOk(repo, ["snapshots", "--json"])).length, 1);
      await resticOk(repo, ["check"]);

      const borg = {
        accept: "application/vnd.x.borgstore.rest.v1",
        authorization: `Basic ${btoa("alice:secret")}`,
      };
      const post = async (path: string, body?: string) => {
        const response = await fetch(server.url + path, { method: "POST", headers: borg, body });
        return { status: response.status, text: await response.text() };
      };
      assertEquals((await post("/alice/store/?cmd=create")).status, 200);
      assertEquals((await post("/alice/store/config/x", "bundled borg")).status, 200);
      const hashed = await post("/alice/store/config/x?cmd=hash&algorithm=blake3");
      assertEquals(hashed, { status: 200, text: await blake3("bundled borg") });

      stopped = true;
      assertEquals(await server.stop(), 0);
    } finally {
      if (!stopped) await server.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});
