// restic REST conformance: the checklist of spec/restic-rest.md §15 for servers A (no auth) and
// B (append-only), black-box over HTTP against stowage started as a child process.

import { assert, assertEquals } from "./_assert.ts";
import { parseRawResponse, rawExchange, sha256Hex, spawnStowage, treeSnapshot } from "./_server.ts";

const FOO = "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2";
const DIG = "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882";
const ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const EMP = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ZERO = "0".repeat(64);
const V2 = "application/vnd.x.restic.rest.v2";

async function req(
  base: string,
  method: string,
  path: string,
  init: { body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const response = await fetch(base + path, {
    method,
    body: init.body,
    headers: init.headers,
    redirect: "manual",
  });
  const text = method === "HEAD" ? "" : await response.text();
  return { status: response.status, headers: response.headers, text };
}

Deno.test("restic conformance: server A (--no-auth)", async (t) => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
  const u = server.url;
  try {
    await t.step("1-2 create repository, idempotent", async () => {
      const r = await req(u, "POST", "/?create=true");
      assertEquals(r.status, 200);
      assertEquals(r.headers.get("content-length"), "0");
      assertEquals(r.text, "");
      for (const type of ["data", "index", "keys", "locks", "snapshots"]) {
        const info = await Deno.stat(`${dir}/${type}`);
        assert(info.isDirectory);
        assertEquals(info.mode! & 0o777, 0o700);
      }
      assert((await Deno.stat(`${dir}/data/00`)).isDirectory);
      assert((await Deno.stat(`${dir}/data/ff`)).isDirectory);
      assertEquals((await req(u, "POST", "/?create=true")).status, 200);
    });
    await t.step("3-5 create needs create=true; GET on a repo root is 405", async () => {
      const r = await req(u, "POST", "/");
      assertEquals(r.status, 400);
      assertEquals(r.text, "Bad Request\n");
      assertEquals((await req(u, "POST", "/?create=TRUE")).status, 400);
      assertEquals((await req(u, "POST", "/?create=false&create=true")).status, 400);
      assertEquals((await req(u, "POST", "/?x=1&create=true")).status, 200);
      const g = await req(u, "GET", "/");
      assertEquals(g.status, 405);
      assertEquals(g.headers.get("allow"), "POST");
      assertEquals(g.text, "Method Not Allowed\n");
      assertEquals(g.headers.get("content-type"), "text/plain; charset=utf-8");
      assertEquals(g.headers.get("x-content-type-options"), "nosniff");
    });
    await t.step("6-12 config life cycle", async () => {
      const h = await req(u, "HEAD", "/config");
      assertEquals(h.status, 404);
      assertEquals(h.headers.get("content-length"), "10");
      assertEquals((await req(u, "POST", "/config", { body: "hello config" })).status, 200);
      assertEquals((await req(u, "POST", "/config", { body: "x" })).status, 403);
      const h2 = await req(u, "HEAD", "/config");
      assertEquals(h2.status, 200);
      assertEquals(h2.headers.get("content-length"), "12");
      assertEquals(h2.headers.get("content-type"), null);
      const g = await req(u, "GET", "/config", { headers: { range: "bytes=0-3" } });
      assertEquals(g.status, 200);
      assertEquals(g.text, "hello config");
      assertEquals(g.headers.get("content-type"), "text/plain; charset=utf-8");
      const p = await req(u, "PUT", "/config", { body: "x" });
      assertEquals(p.status, 405);
      assertEquals(p.headers.get("allow"), "HEAD, GET, POST, DELETE");
      assertEquals((await req(u, "DELETE", "/config")).status, 200);
      assertEquals((await req(u, "DELETE", "/config")).status, 200);
      assertEquals((await req(u, "HEAD", "/config")).status, 404);
    });
    await t.step("13-15 uploads are verified and never overwritten", async () => {
      assertEquals((await req(u, "POST", `/keys/${ABC}`, { body: "abc" })).status, 200);
      const info = await Deno.stat(`${dir}/keys/${ABC}`);
      assertEquals(info.mode! & 0o777, 0o600);
      // identical retry: accepted (documented deviation: rest-server answers 403)
      assertEquals((await req(u, "POST", `/keys/${ABC}`, { body: "abc" })).status, 200);
      const bad = await req(u, "POST", `/snapshots/${ABC}`, { body: "abd" });
      assertEquals(bad.status, 400);
      assertEquals(bad.text, "Bad Request\n");
      assertEquals([...Deno.readDirSync(`${dir}/snapshots`)].length, 0);
    });
    await t.step("14b different content under an existing ID is 403", async () => {
      // write a file whose name is ABC but content differs (as if placed by --no-verify-upload)
      await Deno.writeTextFile(`${dir}/index/${ABC}`, "not abc");
      assertEquals((await req(u, "POST", `/index/${ABC}`, { body: "abc" })).status, 403);
      assertEquals(await Deno.readTextFile(`${dir}/index/${ABC}`), "not abc");
      await Deno.remove(`${dir}/index/${ABC}`);
    });
    await t.step("16-18 data layout, HEAD and GET headers", async () => {
      assertEquals((await req(u, "POST", `/data/${FOO}`, { body: "foobar" })).status, 200);
      assertEquals(await Deno.readTextFile(`${dir}/data/c3/${FOO}`), "foobar");
      const h = await req(u, "HEAD", `/data/${FOO}`);
      assertEquals(h.status, 200);
      assertEquals(h.headers.get("content-length"), "6");
      const g = await req(u, "GET", `/data/${FOO}`);
      assertEquals(g.status, 200);
      assertEquals(g.headers.get("accept-ranges"), "bytes");
      assertEquals(g.headers.get("content-length"), "6");
      assertEquals(g.text, "foobar");
      assertEquals(g.headers.get("last-modified"), null);
      assertEquals(g.headers.get("etag"), null);
    });
    await t.step("19-23 ranges", async () => {
      assertEquals((await req(u, "POST", `/data/${DIG}`, { body: "0123456789" })).status, 200);
      const get = (range: string) => req(u, "GET", `/data/${DIG}`, { headers: { range } });
      let r = await get("bytes=2-5");
      assertEquals([r.status, r.headers.get("content-range"), r.text], [
        206,
        "bytes 2-5/10",
        "2345",
      ]);
      assertEquals(r.headers.get("content-length"), "4");
      for (const range of ["bytes=7-", "bytes=-3"]) {
        r = await get(range);
        assertEquals([r.status, r.headers.get("content-range"), r.text], [
          206,
          "bytes 7-9/10",
          "789",
        ]);
      }
      r = await get("bytes=8-100");
      assertEquals([r.status, r.headers.get("content-range"), r.text], [206, "bytes 8-9/10", "89"]);
      r = await get("bytes=10-");
      assertEquals(r.status, 416);
      assertEquals(r.headers.get("content-range"), "bytes */10");
      assertEquals(r.text, "invalid range: failed to overlap\n");
      r = await get("bytes=5-2");
      assertEquals(r.status, 416);
      assertEquals(r.headers.get("content-range"), null);
      assertEquals(r.text, "invalid range\n");
      for (const range of ["bytes=abc", "items=0-5"]) assertEquals((await get(range)).status, 416);
      r = await get("bytes= 0-9");
      assertEquals([r.status, r.text], [206, "0123456789"]);
      r = await get("bytes=0-1,5-6");
      assertEquals(r.status, 206);
      assert(r.headers.get("content-type")!.startsWith("multipart/byteranges; boundary="));
      assert(
        r.text.includes("Content-Range: bytes 0-1/10\r\n") && r.text.includes("\r\n\r\n01\r\n"),
      );
      assert(
        r.text.includes("Content-Range: bytes 5-6/10\r\n") && r.text.includes("\r\n\r\n56\r\n"),
      );
      assertEquals(
        Number(r.headers.get("content-length")),
        new TextEncoder().encode(r.text).length,
      );
      r = await get("bytes=0-1,600-700");
      assertEquals([r.status, r.headers.get("content-range"), r.text], [206, "bytes 0-1/10", "01"]);
      r = await get("bytes=0-9,0-9");
      assertEquals([r.status, r.text], [200, "0123456789"]);
      r = await req(u, "GET", `/data/${DIG}`, { headers: { range: "bytes=2-5", "if-range": "x" } });
      assertEquals(r.status, 200);
      r = await req(u, "HEAD", `/data/${DIG}`, { headers: { range: "bytes=2-5" } });
      assertEquals([r.status, r.headers.get("content-length")], [200, "10"]);
    });
    await t.step("24-27 lists v1 and v2", async () => {
      const v1 = await req(u, "GET", "/data/");
      assertEquals(v1.status, 200);
      assertEquals(v1.headers.get("content-type"), "application/vnd.x.restic.rest.v1");
      assertEquals(new Set(JSON.parse(v1.text)), new Set([DIG, FOO]));
      const v2 = await req(u, "GET", "/data/", { headers: { accept: V2 } });
      assertEquals(v2.headers.get("content-type"), V2);
      assertEquals(JSON.parse(v2.text), [{ name: DIG, size: 10 }, { name: FOO, size: 6 }]);
      assert(v2.text.startsWith('[{"name":'));
      for (const accept of [undefined, V2]) {
        const l = await req(u, "GET", "/locks/", { headers: accept ? { accept } : {} });
        assertEquals([l.status, l.text], [200, "[]"]);
      }
      const mixed = await req(u, "GET", "/data/", { headers: { accept: `${V2}, */*` } });
      assertEquals(mixed.headers.get("content-type"), "application/vnd.x.restic.rest.v1");
    });
    await t.step("24b stray files in data/ are skipped", async () => {
      await Deno.writeTextFile(`${dir}/data/.DS_Store`, "x");
      const v1 = await req(u, "GET", "/data/");
      assertEquals(new Set(JSON.parse(v1.text)), new Set([DIG, FOO]));
      await Deno.remove(`${dir}/data/.DS_Store`);
    });
    await t.step("28-33 routing errors", async () => {
      const h = await req(u, "HEAD", "/data/");
      assertEquals([h.status, h.headers.get("allow")], [405, "GET"]);
      assertEquals((await req(u, "POST", "/data/")).status, 405);
      assertEquals((await req(u, "GET", "/data")).status, 404);
      for (
        const path of [
          `/data/${FOO}/`,
          `/data/${FOO.toUpperCase()}`,
          "/data/foobar",
          `/data/${FOO.slice(0, 63)}`,
          `/data/${FOO}0`,
          `/unknown/${ABC}`,
        ]
      ) {
        assertEquals((await req(u, "GET", path)).status, 404, path);
      }
      assertEquals((await req(u, "DELETE", `/data/${FOO}`)).status, 200);
      assertEquals((await req(u, "GET", `/data/${FOO}`)).status, 404);
      assertEquals((await req(u, "DELETE", `/data/${FOO}`)).status, 200);
      const p = await req(u, "PATCH", `/keys/${ABC}`);
      assertEquals([p.status, p.headers.get("allow")], [405, "HEAD, GET, POST, DELETE"]);
    });
    await t.step("34-35 nested repositories, %2F decoding", async () => {
      assertEquals((await req(u, "POST", "/a/b/?create=true")).status, 200);
      assert((await Deno.stat(`${dir}/a/b/data/7f`)).isDirectory);
      assertEquals((await req(u, "POST", "/a/b/c/?create=true")).status, 404);
      assertEquals((await req(u, "POST", "/a/b/config", { body: "cfg" })).status, 200);
      const g = await req(u, "GET", "/a%2Fb/config");
      assertEquals([g.status, g.text], [200, "cfg"]);
    });
    await t.step("36-38 canonical paths, traversal, NUL", async () => {
      const raw = (line: string) =>
        rawExchange(server.port, `${line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      // Deno's URL parser resolves dot segments itself; the result must be the canonical path.
      const dot = parseRawResponse(await raw("GET /a/../config"));
      assert(dot.status === 301 || dot.status === 404 || dot.status === 200, String(dot.status));
      if (dot.status === 301) assertEquals(dot.headers.get("location"), "/config");
      const slash = parseRawResponse(await raw("GET //config"));
      assertEquals([slash.status, slash.headers.get("location")], [301, "/config"]);
      const post = parseRawResponse(
        await rawExchange(
          server.port,
          "POST //config HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ),
      );
      assertEquals([post.status, post.headers.get("location"), post.text], [301, "/config", ""]);
      const encoded = parseRawResponse(await raw("GET /x%2F..%2F..%2Fetc/config"));
      assertEquals([encoded.status, encoded.headers.get("location")], [301, "/etc/config"]);
      assertEquals((await req(u, "GET", "/a%00b/config")).status, 404);
      assertEquals((await req(u, "GET", "/%zz/config")).status, 404);
    });
    await t.step("39-43 missing repositories", async () => {
      const c = await req(u, "POST", "/newrepo2/config", { body: "cfg" });
      assertEquals([c.status, c.text], [500, "Internal Server Error\n"]);
      assertEquals((await req(u, "POST", `/newrepo/keys/${ABC}`, { body: "abc" })).status, 200);
      assertEquals([...Deno.readDirSync(`${dir}/newrepo`)].map((e) => e.name), ["keys"]);
      assertEquals((await req(u, "GET", "/newrepo/data/")).status, 404);
      assertEquals((await req(u, "POST", "/datax/?create=true")).status, 200);
      const g = await req(u, "GET", "/datax/");
      assertEquals([g.status, g.headers.get("allow")], [405, "POST"]);
      assertEquals((await req(u, "POST", "/foo?create=true")).status, 404);
    });
    await t.step("44 chunked upload", async () => {
      const body = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode("abc"));
          c.close();
        },
      });
      assertEquals((await req(u, "POST", `/index/${ABC}`, { body })).status, 200);
    });
    await t.step("45 truncated upload leaves nothing", async () => {
      const raw = await rawExchange(
        server.port,
        `POST /index/${DIG} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123`,
        { halfClose: true },
      );
      if (raw.byteLength > 0) assertEquals(parseRawResponse(raw).status, 400);
      await new Promise((r) => setTimeout(r, 200));
      const names = [...Deno.readDirSync(`${dir}/index`)].map((e) => e.name);
      assertEquals(names, [ABC]);
    });
    await t.step("46 empty object", async () => {
      assertEquals((await req(u, "POST", `/keys/${EMP}`, { body: "" })).status, 200);
      const g = await req(u, "GET", `/keys/${EMP}`, { headers: { range: "bytes=0-" } });
      assertEquals([g.status, g.headers.get("content-length"), g.text], [200, "0", ""]);
    });
    await t.step("47 truncated config leaves nothing", async () => {
      assertEquals((await req(u, "POST", "/pc/?create=true")).status, 200);
      await rawExchange(
        server.port,
        `POST /pc/config HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n${"x".repeat(100)}`,
        { halfClose: true },
      );
      await new Promise((r) => setTimeout(r, 200));
      assertEquals((await req(u, "HEAD", "/pc/config")).status, 404);
      assertEquals((await req(u, "POST", "/pc/config", { body: "ok" })).status, 200);
    });
    await t.step("48 deep unknown path", async () => {
      assertEquals((await req(u, "GET", "/x/y/z")).status, 404);
    });
    await t.step("83-like: health endpoint needs no auth and says ok", async () => {
      const h = await req(u, "GET", "/health");
      assertEquals([h.status, h.text], [200, "ok\n"]);
    });
    await t.step("no temp files remain anywhere", async () => {
      const snapshot = await treeSnapshot(dir);
      for (const name of snapshot.keys()) assert(!name.includes("stowage-tmp"), name);
    });
  } finally {
    assertEquals(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restic conformance: server B (--append-only)", async (t) => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--append-only",
    "--listen",
    "127.0.0.1:0",
  ]);
  const u = server.url;
  try {
    await t.step("49-50 config is create-once and never deletable", async () => {
      assertEquals((await req(u, "POST", "/?create=true")).status, 200);
      assertEquals((await req(u, "POST", "/config", { body: "c1" })).status, 200);
      assertEquals((await req(u, "POST", "/config", { body: "c2" })).status, 403);
      assertEquals((await req(u, "DELETE", "/config")).status, 403);
      assertEquals((await req(u, "GET", "/config")).text, "c1");
    });
    await t.step("51-53 deletes refused except locks", async () => {
      assertEquals((await req(u, "POST", `/data/${FOO}`, { body: "foobar" })).status, 200);
      assertEquals((await req(u, "DELETE", `/data/${FOO}`)).status, 403);
      assertEquals((await req(u, "DELETE", `/data/${ZERO}`)).status, 403);
      assertEquals((await req(u, "POST", `/locks/${ABC}`, { body: "abc" })).status, 200);
      assertEquals((await req(u, "DELETE", `/locks/${ABC}`)).status, 200);
      assertEquals((await req(u, "DELETE", `/locks/${ABC}`)).status, 200);
      assertEquals((await req(u, "GET", `/locks/${ABC}`)).status, 404);
      for (const type of ["keys", "snapshots", "index"]) {
        assertEquals((await req(u, "POST", `/${type}/${ABC}`, { body: "abc" })).status, 200);
        assertEquals((await req(u, "DELETE", `/${type}/${ABC}`)).status, 403);
      }
      assertEquals(await Deno.readTextFile(`${dir}/data/c3/${FOO}`), "foobar");
    });
    await t.step("54 wrong content is 400", async () => {
      assertEquals((await req(u, "POST", `/locks/${ABC}`, { body: "abd" })).status, 400);
    });
    await t.step("identical retry succeeds in append-only mode", async () => {
      assertEquals((await req(u, "POST", `/data/${FOO}`, { body: "foobar" })).status, 200);
      // different bytes under an existing ID: refused before anything changes
      assertEquals((await req(u, "POST", `/data/${FOO}`, { body: "foobaz" })).status, 403);
    });
  } finally {
    assertEquals(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restic: --no-verify-upload stores any content (83)", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "--path",
    dir,
    "--no-auth",
    "--no-verify-upload",
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    const r = await req(server.url, "POST", `/keys/${ZERO}`, { body: "not matching" });
    assertEquals(r.status, 200);
    assertEquals((await req(server.url, "GET", `/keys/${ZERO}`)).text, "not matching");
    assertEquals(sha256Hex("abc"), ABC);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
