// restic protocol edge cases over HTTP: the streaming size matrix checked on disk, over-long and
// odd names, a real "disk full" (a 1 MiB tmpfs) mapped to 507 with nothing left behind, and
// restic end to end over TLS with --cacert.

import { assert, assertEquals } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import {
  parseRawResponse,
  randomBytes,
  rawExchange,
  sha256Hex,
  spawnStowage,
  treeSnapshot,
  withStowage,
} from "./_server.ts";

Deno.test("streaming uploads keep every byte: sizes around the 64 KiB boundary", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
  try {
    for (const size of [0, 1, 65535, 65536, 65537, 3_000_000]) {
      const body = randomBytes(size);
      const id = sha256Hex(body);
      for (const chunked of [false, true]) {
        const payload = chunked
          ? new ReadableStream({
            start(c) {
              for (let at = 0; at < size; at += 7000) c.enqueue(body.slice(at, at + 7000));
              c.close();
            },
          })
          : body;
        const type = chunked ? "index" : "data";
        const response = await fetch(`${server.url}/${type}/${id}`, {
          method: "POST",
          body: payload,
        });
        assertEquals(response.status, 200, `size ${size} chunked ${chunked}`);
        const path = type === "data" ? `${dir}/data/${id.slice(0, 2)}/${id}` : `${dir}/index/${id}`;
        const onDisk = await Deno.readFile(path);
        assertEquals(onDisk.byteLength, size);
        assertEquals(sha256Hex(onDisk), id);
        const back = await fetch(`${server.url}/${type}/${id}`);
        assertEquals(sha256Hex(new Uint8Array(await back.arrayBuffer())), id);
      }
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("odd and over-long names are refused without touching the disk", async () => {
  const dir = await Deno.makeTempDir();
  const data = `${dir}/data`;
  const server = await spawnStowage(["--path", data, "--no-auth", "--listen", "127.0.0.1:0"]);
  try {
    const id = sha256Hex("abc");
    const cases: [string, string][] = [
      ["POST", `/${"x".repeat(300)}/keys/${id}`],
      ["POST", `/${"x".repeat(300)}/?create=true`],
      ["POST", `/a%00b/keys/${id}`],
      ["POST", `/a%5Cb/keys/${id}`],
      ["GET", `/%2e%2e/%2e%2e/etc/config`],
      ["POST", `/..%2F..%2Fescape/keys/${id}`],
      ["POST", `/keys/${id}%00`],
      ["POST", `/keys/${id.toUpperCase()}`],
    ];
    for (const [method, path] of cases) {
      const response = await fetch(server.url + path, {
        method,
        body: method === "POST" ? "abc" : undefined,
        redirect: "manual",
      });
      await response.body?.cancel();
      assert(
        response.status >= 300 && response.status < 500,
        `${method} ${path}: ${response.status}`,
      );
    }
    const outside = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(outside.filter((n) => n !== "data"), []);
    for (const name of (await treeSnapshot(data)).keys()) assert(!name.includes("escape"), name);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

function canMountTmpfs(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    return Deno.uid() === 0 &&
      new Deno.Command("mount", { args: ["--version"] }).outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "disk full (ENOSPC) answers 507 and leaves no partial file",
  ignore: !canMountTmpfs(),
  async fn() {
    const dir = await Deno.makeTempDir();
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
    }).output();
    assert(mounted.success, new TextDecoder().decode(mounted.stderr));
    const server = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
    try {
      const big = randomBytes(2 * 1024 * 1024);
      const response = await fetch(`${server.url}/data/${sha256Hex(big)}`, {
        method: "POST",
        body: big,
      });
      await response.body?.cancel();
      assertEquals(response.status, 507);
      const small = randomBytes(1000);
      const ok = await fetch(`${server.url}/data/${sha256Hex(small)}`, {
        method: "POST",
        body: small,
      });
      await ok.body?.cancel();
      assertEquals(ok.status, 200);
      const files = [...(await treeSnapshot(dir)).keys()].filter((n) => !n.endsWith("/"));
      assertEquals(files, [`data/${sha256Hex(small).slice(0, 2)}/${sha256Hex(small)}`]);
    } finally {
      await server.stop();
      await new Deno.Command("umount", { args: [dir] }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "restic over TLS with --cacert, TLS 1.3 minimum and certificate reload",
  ignore: peerMissing("restic") || peerMissing("openssl"),
  async fn() {
    const dir = await Deno.makeTempDir();
    const data = `${dir}/data`;
    await Deno.mkdir(data);
    const makeCert = async (name: string) => {
      const out = await new Deno.Command("openssl", {
        args: [
          ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
          ...["-nodes", "-subj", "/CN=localhost", "-days", "2"],
          ...["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
          ...["-addext", "basicConstraints=critical,CA:FALSE"],
          ...["-keyout", `${dir}/${name}.key`, "-out", `${dir}/${name}.crt`],
        ],
        stderr: "piped",
      }).output();
      assert(out.success, new TextDecoder().decode(out.stderr));
    };
    await makeCert("one");
    await makeCert("two");
    await Deno.copyFile(`${dir}/one.crt`, `${data}/public_key`);
    await Deno.copyFile(`${dir}/one.key`, `${data}/private_key`);
    const server = await spawnStowage([
      "--path",
      data,
      "--no-auth",
      "--tls",
      "--tls-min-ver",
      "1.3",
      "--listen",
      "127.0.0.1:0",
    ]);
    const restic = (cert: string, args: string[]) =>
      new Deno.Command("restic", {
        args: [
          "--no-cache",
          "--cacert",
          cert,
          "-r",
          `rest:https://127.0.0.1:${server.port}/tls/`,
          ...args,
        ],
        env: { RESTIC_PASSWORD: "pw" },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
    try {
      await Deno.mkdir(`${dir}/src`);
      await Deno.writeFile(`${dir}/src/file.bin`, randomBytes(2_000_000));
      for (const args of [["init"], ["backup", `${dir}/src`], ["check", "--read-data"]]) {
        const run = await restic(`${dir}/one.crt`, args);
        assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
      }
      const tls12 = await new Deno.Command("curl", {
        args: [
          "-s",
          "--cacert",
          `${dir}/one.crt`,
          "--tls-max",
          "1.2",
          `https://127.0.0.1:${server.port}/health`,
        ],
      }).output();
      assert(!tls12.success, "a TLS 1.2 client must fail the handshake under --tls-min-ver 1.3");
      await Deno.copyFile(`${dir}/two.crt`, `${data}/public_key`);
      await Deno.copyFile(`${dir}/two.key`, `${data}/private_key`);
      server.process.kill("SIGHUP");
      await server.waitForLine(/^Reloaded TLS certificate/);
      const withNew = await restic(`${dir}/two.crt`, ["snapshots"]);
      assertEquals(withNew.code, 0, new TextDecoder().decode(withNew.stderr));
      const withOld = await restic(`${dir}/one.crt`, ["snapshots"]);
      assert(withOld.code !== 0, "the old certificate is no longer served");
    } finally {
      assertEquals(await server.stop(), 0);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("restic: a body that breaks its chunked framing is answered only after its cleanup", () =>
  // The answer must not overtake the upload's cleanup: a client that sends its next request
  // as soon as it hears back would otherwise race it (and a directory could be left behind).
  withStowage(["--no-auth"], async (server, dir) => {
    for (let i = 0; i < 12; i++) {
      const id = sha256Hex(`broken framing ${i}`);
      const bytes = await rawExchange(
        server.port,
        `POST /r/data/${id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
          (i % 2 === 0 ? "ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n" : "zz\r\nabc\r\n0\r\n\r\n"),
      );
      assertEquals(parseRawResponse(bytes).status, 400);
      // checked the moment the answer is complete: no directory, no temp file
      assertEquals([...Deno.readDirSync(`${dir}/r/data`)].map((e) => e.name), [], `round ${i}`);
    }
  }, (dir) => Deno.mkdir(`${dir}/r/data`, { recursive: true })));
