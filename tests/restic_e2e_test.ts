// End to end with the real restic client (Debian's restic): init, backup of a generated tree,
// second backup, snapshots, check --read-data, restore with byte comparison, forget --prune and
// check, over TCP with htpasswd auth and over a unix socket. Also append-only behaviour.

import { assert, assertEquals } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { MAIN, randomBytes, spawnStowage, treeSnapshot } from "./_server.ts";
import { resticOk, runRestic } from "./_restic.ts";

const RESTIC_IGNORED = peerMissing("restic");

/** A tree with empty files, a 20 MiB file, many small files and a nested directory. */
async function makeTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/small/nested/deeper`, { recursive: true });
  await Deno.writeFile(`${root}/empty-1`, new Uint8Array());
  await Deno.writeFile(`${root}/small/empty-2`, new Uint8Array());
  await Deno.writeFile(`${root}/big.bin`, randomBytes(20 * 1024 * 1024));
  for (let i = 0; i < 300; i++) {
    const dir = i % 3 === 0 ? "small" : i % 3 === 1 ? "small/nested" : "small/nested/deeper";
    await Deno.writeFile(`${root}/${dir}/file-${i}.bin`, randomBytes(1 + (i * 97) % 9000));
  }
  await Deno.writeTextFile(`${root}/readme.txt`, "hello restic\n".repeat(100));
}

async function fullCycle(repo: string, work: string): Promise<void> {
  const source = `${work}/source`;
  await makeTree(source);
  await resticOk(repo, ["init"]);
  await resticOk(repo, ["backup", source]);
  await Deno.writeTextFile(`${source}/added-later.txt`, "second backup\n");
  await Deno.writeFile(`${source}/small/file-1.bin`, randomBytes(5000));
  await resticOk(repo, ["backup", source]);
  const snapshots = JSON.parse(await resticOk(repo, ["snapshots", "--json"]));
  assertEquals(snapshots.length, 2);
  await resticOk(repo, ["check", "--read-data"]);
  await resticOk(repo, ["restore", "latest", "--target", `${work}/restore`]);
  const original = await treeSnapshot(source);
  const restored = await treeSnapshot(`${work}/restore${source}`);
  assertEquals(restored, original);
  await resticOk(repo, ["forget", "--keep-last", "1", "--prune"]);
  assertEquals(JSON.parse(await resticOk(repo, ["snapshots", "--json"])).length, 1);
  await resticOk(repo, ["check"]);
}

Deno.test({
  name: "restic e2e over TCP with htpasswd auth",
  ignore: RESTIC_IGNORED,
  async fn() {
    const work = await Deno.makeTempDir();
    const data = `${work}/data`;
    await Deno.mkdir(data);
    // {SHA} entry for alice:secret (generated the way `htpasswd -s` does)
    await Deno.writeTextFile(`${data}/.htpasswd`, "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
    const server = await spawnStowage(["--path", data, "--listen", "127.0.0.1:0"]);
    try {
      const denied = await runRestic(`rest:http://alice:wrong@127.0.0.1:${server.port}/repo1/`, [
        "init",
      ]);
      assert(denied.code !== 0, "a wrong password must not init");
      await fullCycle(`rest:http://alice:secret@127.0.0.1:${server.port}/alice/repo1/`, work);
      const names = await treeSnapshot(data);
      for (const name of names.keys()) assert(!name.includes("stowage-tmp"), name);
      assert(names.has("alice/repo1/config"));
    } finally {
      assertEquals(await server.stop(), 0);
      await Deno.remove(work, { recursive: true });
    }
  },
});

// restic 0.14 (Debian) has no `rest:http+unix://` support yet, so the unix socket listener is
// exercised with curl --unix-socket speaking the same protocol restic would.
Deno.test({
  name: "restic protocol over a unix socket (curl --unix-socket)",
  ignore: peerMissing("curl"),
  async fn() {
    const work = await Deno.makeTempDir();
    const socket = `${work}/stowage.sock`;
    const server = await spawnStowage([
      "--path",
      `${work}/data`,
      "--no-auth",
      "--listen",
      `unix:${socket}`,
    ]);
    const curl = async (args: string[]) => {
      const out = await new Deno.Command("curl", {
        args: ["-sS", "--unix-socket", socket, "-o", "-", "-w", "\n%{http_code}", ...args],
        stdout: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const nl = text.lastIndexOf("\n");
      return { body: text.slice(0, nl), status: Number(text.slice(nl + 1)) };
    };
    try {
      assertEquals((await Deno.stat(socket)).mode! & 0o777, 0o660);
      assertEquals((await curl(["-X", "POST", "http://x/repo1/?create=true"])).status, 200);
      const id = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
      assertEquals((await curl(["--data-binary", "abc", `http://x/repo1/keys/${id}`])).status, 200);
      assertEquals(await curl([`http://x/repo1/keys/${id}`]), { body: "abc", status: 200 });
      assertEquals(await curl(["http://x/repo1/keys/"]), { body: `["${id}"]`, status: 200 });
      assertEquals((await curl(["http://x/repo1/"])).status, 405);
      assertEquals((await curl(["http://x/repo2/config"])).status, 404);
    } finally {
      assertEquals(await server.stop(), 0);
      assert(server.stderr.some((l) => l === "shutdown cleanly"), server.stderr.join("\n"));
      let gone = false;
      try {
        await Deno.stat(socket);
      } catch {
        gone = true;
      }
      assert(gone, "the socket file is removed on shutdown");
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "restic e2e with --append-only: backup works, prune fails, unlock works",
  ignore: RESTIC_IGNORED,
  async fn() {
    const work = await Deno.makeTempDir();
    const server = await spawnStowage([
      "--path",
      `${work}/data`,
      "--no-auth",
      "--append-only",
      "--listen",
      "127.0.0.1:0",
    ]);
    const repo = `rest:http://127.0.0.1:${server.port}/ao/`;
    try {
      await Deno.mkdir(`${work}/src`);
      await Deno.writeFile(`${work}/src/a.bin`, randomBytes(300_000));
      await resticOk(repo, ["init"]);
      await resticOk(repo, ["backup", `${work}/src`]);
      await Deno.writeFile(`${work}/src/b.bin`, randomBytes(1000));
      await resticOk(repo, ["backup", `${work}/src`]);
      const before = await treeSnapshot(`${work}/data/ao`);
      const prune = await runRestic(repo, ["forget", "--keep-last", "1", "--prune"]);
      assert(prune.code !== 0, "prune must fail in append-only mode");
      await resticOk(repo, ["unlock"]);
      const after = await treeSnapshot(`${work}/data/ao`);
      for (const [name, hash] of before) {
        if (!name.startsWith("locks/")) assertEquals(after.get(name), hash, name);
      }
      assertEquals(JSON.parse(await resticOk(repo, ["snapshots", "--json"])).length, 2);
      await resticOk(repo, ["check", "--read-data"]);
    } finally {
      await server.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "restic e2e with --private-repos: another user cannot list, read or write",
  ignore: RESTIC_IGNORED,
  async fn() {
    const work = await Deno.makeTempDir();
    const data = `${work}/data`;
    await Deno.mkdir(data);
    // {SHA} entries: alice:secret, bob:hunter2
    await Deno.writeTextFile(
      `${data}/.htpasswd`,
      "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\nbob:{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=\n",
    );
    const server = await spawnStowage([
      "--path",
      data,
      "--private-repos",
      "--listen",
      "127.0.0.1:0",
    ]);
    const url = (user: string, repo: string) =>
      `rest:http://${user}@127.0.0.1:${server.port}/${repo}/`;
    try {
      await Deno.mkdir(`${work}/src`);
      await Deno.writeFile(`${work}/src/a.bin`, randomBytes(100_000));
      await resticOk(url("alice:secret", "alice/laptop"), ["init"]);
      await resticOk(url("alice:secret", "alice/laptop"), ["backup", `${work}/src`]);
      const before = await treeSnapshot(`${data}/alice`);
      for (const args of [["snapshots"], ["cat", "config"], ["backup", `${work}/src`]]) {
        const run = await runRestic(url("bob:hunter2", "alice/laptop"), args);
        assert(run.code !== 0, `bob: restic ${args[0]} must fail`);
      }
      const own = await runRestic(url("bob:hunter2", "bob/laptop"), ["init"]);
      assertEquals(own.code, 0, own.stderr);
      assertEquals(await treeSnapshot(`${data}/alice`), before);
    } finally {
      await server.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "restic e2e through the rclone: backend (stowage serve restic --stdio)",
  ignore: RESTIC_IGNORED,
  async fn() {
    const work = await Deno.makeTempDir();
    const program = `${Deno.execPath()} run --allow-all --quiet ${MAIN}`;
    const repo = `rclone:${work}/repo`;
    const run = (args: string[]) =>
      new Deno.Command("restic", {
        args: ["--no-cache", "-o", `rclone.program=${program}`, "-r", repo, ...args],
        env: { RESTIC_PASSWORD: "pw" },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(180_000),
      }).output();
    try {
      await makeTree(`${work}/src`);
      for (const args of [["init"], ["backup", `${work}/src`], ["check", "--read-data"]]) {
        const out = await run(args);
        assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      }
      const restore = await run(["restore", "latest", "--target", `${work}/restore`]);
      assertEquals(restore.code, 0, new TextDecoder().decode(restore.stderr));
      assertEquals(
        await treeSnapshot(`${work}/restore${work}/src`),
        await treeSnapshot(`${work}/src`),
      );
      assert((await Deno.stat(`${work}/repo/config`)).isFile);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
