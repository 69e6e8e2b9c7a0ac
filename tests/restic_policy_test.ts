// restic REST conformance for servers C (htpasswd + private repos + metrics), D (quota) and E
// (proxy auth) of spec/restic-rest.md §15, and the authorization matrix: {no-auth, htpasswd,
// proxy} × {plain, append-only, private-repos, both} × every restic operation × {owner, other
// user, anonymous}, asserting exact status codes and that denied operations changed nothing.

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { randomBytes, sha256Hex, spawnStowage, treeSnapshot } from "./_server.ts";

const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const FOO = "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2";

function basic(user: string, password: string): string {
  return "Basic " + btoa(`${user}:${password}`);
}

async function status(
  url: string,
  method: string,
  headers: Record<string, string> = {},
  body?: BodyInit,
): Promise<number> {
  const response = await fetch(url, { method, headers, body, redirect: "manual" });
  await response.body?.cancel();
  return response.status;
}

async function htpasswdLine(flag: string, user: string, password: string): Promise<string> {
  const out = await new Deno.Command("htpasswd", {
    args: [flag, "-nb", user, password],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test({
  name: "restic conformance: server C (htpasswd, --private-repos, --prometheus)",
  ignore: peerMissing("htpasswd"),
  async fn(t) {
    const dir = await Deno.makeTempDir();
    const lines = [
      await htpasswdLine("-B", "alice", "pw1"),
      await htpasswdLine("-s", "bob", "pw2"),
      await htpasswdLine("-m", "carol", "pw3"),
      await htpasswdLine("-B", "metrics", "mpw"),
      "bad/user:$2y$05$abcdefghijklmnopqrstuu5RSxU6KDrOsBhyK3pY6JKl7Xd0n6bqi",
    ];
    await Deno.writeTextFile(`${dir}/.htpasswd`, lines.join("\n") + "\n");
    const server = await spawnStowage([
      "--path",
      dir,
      "--private-repos",
      "--prometheus",
      "--listen",
      "127.0.0.1:0",
    ]);
    const u = server.url;
    const alice = { authorization: basic("alice", "pw1") };
    try {
      await t.step("55 startup log", () => {
        assert(server.stderr.some((l) => /Ignoring invalid username "bad\/user"/.test(l)));
        assert(server.stderr.some((l) => l.startsWith("Loaded htpasswd file")));
      });
      await t.step("56-60 authentication", async () => {
        const r = await fetch(`${u}/alice/config`);
        assertEquals(r.status, 401);
        assertEquals(await r.text(), "Unauthorized\n");
        assertEquals(
          await status(`${u}/alice/config`, "GET", { authorization: basic("alice", "x") }),
          401,
        );
        assertEquals(
          await status(`${u}/bob/config`, "GET", { authorization: basic("bob", "pw2") }),
          404,
        );
        // apr1 is supported by stowage (rest-server 0.14 rejects it)
        assertEquals(
          await status(`${u}/carol/config`, "GET", { authorization: basic("carol", "pw3") }),
          404,
        );
        const lower = "basic " + btoa("alice:pw1");
        assertEquals(await status(`${u}/alice/config`, "GET", { authorization: lower }), 404);
        const twoSpaces = "Basic  " + btoa("alice:pw1");
        assertEquals(await status(`${u}/alice/config`, "GET", { authorization: twoSpaces }), 401);
      });
      await t.step("61-62 private repositories", async () => {
        for (const path of ["/bob/config", "/config", "/data/", "/alicex/config", "/bob/"]) {
          assertEquals(await status(u + path, "GET", alice), 401, path);
        }
        assertEquals(await status(`${u}/alice/?create=true`, "POST", alice), 200);
        assertEquals(await status(`${u}/alice/sub/?create=true`, "POST", alice), 200);
      });
      await t.step("63-64 metrics access and counters", async () => {
        assertEquals(await status(`${u}/metrics`, "GET", alice), 401);
        const metricsUser = { authorization: basic("metrics", "mpw") };
        assertEquals(await status(`${u}/alice/data/${FOO}`, "POST", alice, "foobar"), 200);
        const ranged = await fetch(`${u}/alice/data/${FOO}`, {
          headers: { ...alice, range: "bytes=0-1" },
        });
        assertEquals([ranged.status, await ranged.text()], [206, "fo"]);
        const m = await fetch(`${u}/metrics`, { headers: metricsUser });
        assertEquals(m.status, 200);
        assert(m.headers.get("content-type")!.startsWith("text/plain"));
        const text = await m.text();
        for (
          const line of [
            'rest_server_blob_write_total{repo="alice",type="data",user="alice"} 1',
            'rest_server_blob_write_bytes_total{repo="alice",type="data",user="alice"} 6',
            'rest_server_blob_read_total{repo="alice",type="data",user="alice"} 1',
            'rest_server_blob_read_bytes_total{repo="alice",type="data",user="alice"} 2',
          ]
        ) {
          assert(text.includes(line), `${line}\n${text}`);
        }
      });
      await t.step("65 redirect comes before auth", async () => {
        const r = await fetch(`${u}//bob/config`, { redirect: "manual" });
        assertEquals([r.status, r.headers.get("location")], [301, "/bob/config"]);
        await r.body?.cancel();
      });
      await t.step("66 SIGHUP reloads the htpasswd file", async () => {
        const replaced = [await htpasswdLine("-B", "alice", "new-pw"), ...lines.slice(1)];
        await Deno.writeTextFile(`${dir}/.htpasswd`, replaced.join("\n") + "\n");
        server.process.kill("SIGHUP");
        await server.waitForLine(/^Reloaded htpasswd file/);
        assertEquals(await status(`${u}/alice/config`, "GET", alice), 401);
        const fresh = { authorization: basic("alice", "new-pw") };
        assertEquals(await status(`${u}/alice/config`, "GET", fresh), 404);
      });
    } finally {
      assertEquals(await server.stop(), 0);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("restic conformance: server D (--max-size)", async (t) => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--max-size",
    "1100000",
    "--listen",
    "127.0.0.1:0",
  ]);
  const u = server.url;
  try {
    await t.step("67-70 quota on declared and streamed sizes; config exempt", async () => {
      const small = randomBytes(50_000);
      assertEquals(await status(`${u}/data/${sha256Hex(small)}`, "POST", {}, small), 200);
      const big = randomBytes(2_000_000);
      const id = sha256Hex(big);
      assertEquals(await status(`${u}/data/${id}`, "POST", {}, big), 507);
      const chunked = new ReadableStream({
        start(c) {
          for (let at = 0; at < big.byteLength; at += 100_000) {
            c.enqueue(big.slice(at, at + 100_000));
          }
          c.close();
        },
      });
      assertEquals(await status(`${u}/data/${id}`, "POST", {}, chunked), 507);
      assertEquals(await status(`${u}/data/${id}`, "HEAD"), 404);
      assertEquals(await status(`${u}/?create=true`, "POST"), 200);
      assertEquals(await status(`${u}/config`, "POST", {}, randomBytes(1_000_000)), 200);
    });
    await t.step("no temp files remain after rejected uploads", async () => {
      for (const name of (await treeSnapshot(dir)).keys()) assert(!name.includes("stowage-tmp"));
    });
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quota: 16 concurrent uploaders never exceed the limit", async () => {
  const dir = await Deno.makeTempDir();
  const limit = 2_000_000;
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--max-size",
    String(limit),
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    const results = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const codes: number[] = [];
        for (let i = 0; i < 4; i++) {
          const body = randomBytes(100_000);
          const chunked = i % 2 === 0;
          const payload = chunked
            ? new ReadableStream({
              start(c) {
                c.enqueue(body);
                c.close();
              },
            })
            : body;
          codes.push(await status(`${server.url}/data/${sha256Hex(body)}`, "POST", {}, payload));
        }
        return codes;
      }),
    );
    const codes = results.flat();
    assert(codes.every((c) => c === 200 || c === 507), codes.join(","));
    assert(codes.includes(507) && codes.includes(200));
    let stored = 0;
    for (const [name, hash] of await treeSnapshot(dir)) {
      if (hash !== "dir") stored += (await Deno.stat(`${dir}/${name}`)).size;
    }
    assert(stored <= limit, `stored ${stored} > ${limit}`);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restic conformance: server E (--proxy-auth-username)", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--proxy-auth-username",
    "X-Remote-User",
    "--private-repos",
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    assert(server.stderr.includes("Proxy Authentication enabled."));
    assertEquals(await status(`${server.url}/alice/config`, "GET"), 401);
    assertEquals(await status(`${server.url}/alice/config`, "GET", { "x-remote-user": "" }), 401);
    assertEquals(
      await status(`${server.url}/alice/config`, "GET", { "x-remote-user": "alice" }),
      404,
    );
    assertEquals(
      await status(`${server.url}/bob/config`, "GET", { "x-remote-user": "alice" }),
      401,
    );
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--group-accessible-repos creates 0770 directories and 0660 files (82)", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--group-accessible-repos",
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    const umask = Deno.umask();
    assertEquals(await status(`${server.url}/g/?create=true`, "POST"), 200);
    assertEquals(await status(`${server.url}/g/keys/${ABC}`, "POST", {}, "abc"), 200);
    assertEquals(await status(`${server.url}/g/config`, "POST", {}, "cfg"), 200);
    assertEquals((await Deno.stat(`${dir}/g/data`)).mode! & 0o777, 0o770 & ~umask);
    assertEquals((await Deno.stat(`${dir}/g/keys/${ABC}`)).mode! & 0o777, 0o660 & ~umask);
    assertEquals((await Deno.stat(`${dir}/g/config`)).mode! & 0o777, 0o660 & ~umask);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- authorization matrix ----------------------------------------------------------------

type AuthMode = "none" | "htpasswd" | "proxy";
type PolicyMode = "plain" | "append-only" | "private" | "both";
type Who = "owner" | "other" | "anonymous";

interface Operation {
  name: string;
  method: string;
  path: (repo: string) => string;
  body?: () => BodyInit;
  /** Mutating operations must leave the data directory unchanged when refused. */
  mutates: boolean;
  /** Status when allowed. */
  ok: number;
  /** The operation deletes something (refused by append-only), `lock` for lock deletes. */
  deletes?: "lock" | "other";
}

const OPERATIONS: Operation[] = [
  { name: "create", method: "POST", path: (r) => `/${r}/?create=true`, mutates: true, ok: 200 },
  { name: "head config", method: "HEAD", path: (r) => `/${r}/config`, mutates: false, ok: 200 },
  { name: "get config", method: "GET", path: (r) => `/${r}/config`, mutates: false, ok: 200 },
  {
    name: "post config",
    method: "POST",
    path: (r) => `/${r}/config`,
    body: () => "cfg",
    mutates: true,
    ok: 403, // exists in the fixture: write-once
  },
  {
    name: "delete config",
    method: "DELETE",
    path: (r) => `/${r}/config`,
    mutates: true,
    ok: 200,
    deletes: "other",
  },
  { name: "list data", method: "GET", path: (r) => `/${r}/data/`, mutates: false, ok: 200 },
  { name: "head data", method: "HEAD", path: (r) => `/${r}/data/${FOO}`, mutates: false, ok: 200 },
  { name: "get data", method: "GET", path: (r) => `/${r}/data/${FOO}`, mutates: false, ok: 200 },
  {
    name: "post keys",
    method: "POST",
    path: (r) => `/${r}/keys/${ABC}`,
    body: () => "abc",
    mutates: true,
    ok: 200,
  },
  {
    name: "delete data",
    method: "DELETE",
    path: (r) => `/${r}/data/${FOO}`,
    mutates: true,
    ok: 200,
    deletes: "other",
  },
  {
    name: "delete lock",
    method: "DELETE",
    path: (r) => `/${r}/locks/${ABC}`,
    mutates: true,
    ok: 200,
    deletes: "lock",
  },
];

function expected(auth: AuthMode, policy: PolicyMode, who: Who, op: Operation): number {
  const authOn = auth !== "none";
  if (authOn && who === "anonymous") return 401;
  const privateRepos = policy === "private" || policy === "both";
  if (privateRepos && authOn && who === "other") return 401;
  const appendOnly = policy === "append-only" || policy === "both";
  if (appendOnly && op.deletes === "other") return 403;
  return op.ok;
}

async function fixture(dir: string, repo: string): Promise<void> {
  await Deno.mkdir(`${dir}/${repo}/data/c3`, { recursive: true });
  for (const type of ["index", "keys", "locks", "snapshots"]) {
    await Deno.mkdir(`${dir}/${repo}/${type}`, { recursive: true });
  }
  await Deno.writeTextFile(`${dir}/${repo}/config`, "cfg");
  await Deno.writeTextFile(`${dir}/${repo}/data/c3/${FOO}`, "foobar");
  await Deno.writeTextFile(`${dir}/${repo}/locks/${ABC}`, "abc");
}

Deno.test("authorization matrix: auth modes × policies × operations × users", async (t) => {
  let checked = 0;
  for (const auth of ["none", "htpasswd", "proxy"] as AuthMode[]) {
    for (const policy of ["plain", "append-only", "private", "both"] as PolicyMode[]) {
      await t.step(`${auth} / ${policy}`, async () => {
        const dir = await Deno.makeTempDir();
        // {SHA} entries: alice:pw-a, bob:pw-b
        await Deno.writeTextFile(
          `${dir}/.htpasswd`,
          `alice:{SHA}${sha1Base64("pw-a")}\nbob:{SHA}${sha1Base64("pw-b")}\n`,
        );
        const args = ["--path", dir, "--listen", "127.0.0.1:0"];
        if (auth === "none") args.push("--no-auth");
        if (auth === "proxy") args.push("--proxy-auth-username", "X-User");
        if (policy === "append-only" || policy === "both") args.push("--append-only");
        if (policy === "private" || policy === "both") args.push("--private-repos");
        const server = await spawnStowage(args);
        try {
          const credentials: Record<Who, Record<string, string>> = {
            owner: auth === "htpasswd"
              ? { authorization: basic("alice", "pw-a") }
              : auth === "proxy"
              ? { "x-user": "alice" }
              : {},
            other: auth === "htpasswd"
              ? { authorization: basic("bob", "pw-b") }
              : auth === "proxy"
              ? { "x-user": "bob" }
              : {},
            anonymous: {},
          };
          for (const op of OPERATIONS) {
            for (const who of ["owner", "other", "anonymous"] as Who[]) {
              await Deno.remove(`${dir}/alice`, { recursive: true }).catch(() => {});
              await fixture(dir, "alice/repo");
              const before = await treeSnapshot(dir);
              const want = expected(auth, policy, who, op);
              const got = await status(
                server.url + op.path("alice/repo"),
                op.method,
                credentials[who],
                op.body?.(),
              );
              assertEquals(got, want, `${auth}/${policy}/${op.name}/${who}`);
              if (got !== 200 || !op.mutates) {
                assertEquals(await treeSnapshot(dir), before, `${op.name}/${who} changed files`);
              }
              checked++;
            }
          }
        } finally {
          await server.stop();
          await Deno.remove(dir, { recursive: true });
        }
      });
    }
  }
  assertEquals(checked, 3 * 4 * OPERATIONS.length * 3);
});

function sha1Base64(text: string): string {
  return createHash("sha1").update(text).digest("base64");
}
