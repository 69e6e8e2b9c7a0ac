// Borg stores next to restic repositories on one port (`stowage serve`), chosen by the Accept
// header; private stores per user; protocol collisions refused; append-only as borg's no-delete
// mode; --max-size shared by both protocols. Also the borgstore-server-rest command line.

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { runStowage, sha256Hex, spawnStowage } from "./_server.ts";

const BORG = "application/vnd.x.borgstore.rest.v1";
const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

async function borg(
  url: string,
  method: string,
  options: { body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(url, {
    method,
    body: options.body,
    headers: { accept: BORG, ...options.headers },
  });
  const text = method === "HEAD" ? "" : await response.text();
  return { status: response.status, text, headers: response.headers };
}

function basic(user: string, password: string): Record<string, string> {
  return { authorization: "Basic " + btoa(`${user}:${password}`) };
}

Deno.test("multi-store: borg stores and restic repositories share one port", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
  const u = server.url;
  try {
    assertEquals((await borg(`${u}/s1/?cmd=create`, "POST")).status, 200);
    const body = "pack bytes";
    const stored = await borg(`${u}/s1/packs/ab/abcd`, "POST", {
      body,
      headers: { "x-content-hash-sha256": sha256Hex(body) },
    });
    assertEquals(stored.status, 200);
    assertEquals(await Deno.readTextFile(`${dir}/s1/packs/ab/abcd`), body);
    const list = await borg(`${u}/s1/packs/ab/`, "GET");
    assertEquals(JSON.parse(list.text).map((e: { name: string }) => e.name), ["abcd"]);
    const root = await borg(`${u}/s1//`, "GET");
    assertEquals(root.status, 200);
    const head = await borg(`${u}/s1/packs/ab/abcd`, "HEAD");
    assertEquals([head.status, head.headers.get("content-length")], [200, String(body.length)]);
    const ranged = await borg(`${u}/s1/packs/ab/abcd`, "GET", { headers: { range: "bytes=5-9" } });
    assertEquals([ranged.status, ranged.text], [206, "bytes"]);

    assertEquals((await fetch(`${u}/r1/?create=true`, { method: "POST" })).status, 200);
    const key = await fetch(`${u}/r1/keys/${ABC}`, { method: "POST", body: "abc" });
    assertEquals(key.status, 200);

    // collisions: each protocol refuses the other's directory
    const borgOnRestic = await borg(`${u}/r1/?cmd=quota`, "POST");
    assertEquals(borgOnRestic.status, 409);
    assertMatch(borgOnRestic.text, /restic repository/);
    const resticOnBorg = await fetch(`${u}/s1/keys/${ABC}`, { method: "POST", body: "abc" });
    assertEquals(resticOnBorg.status, 403);
    await resticOnBorg.body?.cancel();
    assertEquals((await borg(`${u}/`, "GET")).status, 404);
    // the restic protocol still answers as before
    const restic = await fetch(`${u}/r1/keys/`, {
      headers: { accept: "application/vnd.x.restic.rest.v2" },
    });
    assertEquals(JSON.parse(await restic.text()), [{ name: ABC, size: 3 }]);
    assertEquals((await borg(`${u}/s1/?cmd=destroy`, "DELETE")).status, 200);
  } finally {
    assertEquals(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("multi-store: htpasswd users, private stores, append-only as no-delete", async () => {
  const dir = await Deno.makeTempDir();
  const sha = (pw: string) => createHash("sha1").update(pw).digest("base64");
  await Deno.writeTextFile(`${dir}/.htpasswd`, `alice:{SHA}${sha("pa")}\nbob:{SHA}${sha("pb")}\n`);
  const server = await spawnStowage([
    "--path",
    dir,
    "--private-repos",
    "--append-only",
    "--listen",
    "127.0.0.1:0",
  ]);
  const u = server.url;
  const alice = basic("alice", "pa");
  try {
    const anonymous = await borg(`${u}/alice/s/?cmd=create`, "POST");
    assertEquals(anonymous.status, 401);
    assertEquals(anonymous.headers.get("www-authenticate"), 'Basic realm="BorgStore REST Server"');
    assertEquals(
      (await borg(`${u}/alice/s/?cmd=create`, "POST", { headers: basic("bob", "pb") })).status,
      403,
    );
    // no-delete mode refuses create at the root; the admin pre-creates the store directory
    await Deno.mkdir(`${dir}/alice/s`, { recursive: true });
    const put = (name: string, body: string) =>
      borg(`${u}/alice/s/${name}`, "POST", { body, headers: alice });
    assertEquals((await put("config/manifest", "m1")).status, 200);
    assertEquals((await put("config/manifest", "m2")).status, 200); // overwrite allowed
    assertEquals((await put("packs/00/0000", "p")).status, 200);
    assertEquals(
      (await borg(`${u}/alice/s/packs/00/0000`, "DELETE", { headers: alice })).status,
      403,
    );
    assertEquals((await put("locks/l1", "l")).status, 200);
    assertEquals((await borg(`${u}/alice/s/locks/l1`, "DELETE", { headers: alice })).status, 200);
    assertEquals((await borg(`${u}/alice/s/packs/00/0000`, "GET", { headers: alice })).text, "p");
    assertEquals(
      (await borg(`${u}/alice/s/packs/00/0000`, "GET", { headers: basic("bob", "pb") })).status,
      403,
    );
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("multi-store: --max-size covers borg stores too", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--max-size",
    "200000",
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    assertEquals((await borg(`${server.url}/s/?cmd=create`, "POST")).status, 200);
    const small = await borg(`${server.url}/s/a`, "POST", { body: new Uint8Array(50_000) });
    assertEquals(small.status, 200);
    const big = await borg(`${server.url}/s/b`, "POST", { body: new Uint8Array(300_000) });
    assertEquals(big.status, 507);
    assertEquals((await borg(`${server.url}/s/b`, "HEAD")).status, 404);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("borgstore-server-rest: command line (128, 139, auth secrets)", async () => {
  const bogus = await runStowage([
    "borgstore-server-rest",
    "--backend",
    "file:///tmp/x",
    "--permissions",
    "bogus",
  ]);
  assert(bogus.code !== 0);
  for (
    const name of [
      "borgbackup-all",
      "borgbackup-no-delete",
      "borgbackup-write-only",
      "borgbackup-read-only",
    ]
  ) {
    assert(bogus.stderr.includes(name), bogus.stderr);
  }
  for (const backend of ["bogus://x", "sftp://host/path", "file://relative"]) {
    const run = await runStowage(["borgstore-server-rest", "--backend", backend]);
    assert(run.code !== 0);
    assertMatch(run.stderr, new RegExp(`Invalid backend URL: ${backend.replace(/[/.]/g, "\\$&")}`));
  }
  const missing = await runStowage(["borgstore-server-rest"]);
  assertEquals(missing.code, 2);

  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/pw`, "s3cret:with:colons\n");
  const server = await spawnStowage([
    "borgstore-server-rest",
    "--backend",
    `file://${dir}/store`,
    "--port",
    "0",
    "--username",
    "u",
    "--password-file",
    `${dir}/pw`,
  ], { ready: /^BorgStore REST server listening on/ });
  try {
    const line = server.stderr.find((l) => l.startsWith("BorgStore REST server listening on"))!;
    const port = Number(/:(\d+)$/.exec(line)![1]);
    const url = `http://127.0.0.1:${port}`;
    assertEquals((await borg(`${url}/?cmd=create`, "POST")).status, 401);
    assertEquals(
      (await borg(`${url}/?cmd=create`, "POST", { headers: basic("u", "s3cret:with:colons") }))
        .status,
      200,
    );
    assert(!server.stderr.some((l) => l.includes("WARNING: --password")));
  } finally {
    assertEquals(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});
