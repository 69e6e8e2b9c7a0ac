// HTTPS transport against real peers: openssl makes self-signed certificates at test time, curl
// checks ALPN (HTTP/2 and HTTP/1.1), streaming both ways, HEAD, the minimum TLS version, and
// `openssl s_client` shows that a certificate reload reaches new connections on the same listener.

import { createHash } from "node:crypto";
import http2 from "node:http2";
import tls from "node:tls";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import type { Handler, RequestInfo } from "../src/http/types.ts";
import { formatCombined } from "../src/http/access_log.ts";
import { startTlsListener, type TlsServer } from "../src/transport/tls.ts";

const ignore = peerMissing("openssl") || peerMissing("curl");
const decoder = new TextDecoder();

async function run(
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function makeCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  const result = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-days",
    "2",
    "-keyout",
    key,
    "-out",
    cert,
  ]);
  assertEquals(result.code, 0, result.stderr);
  return { cert, key };
}

async function fingerprintOfPem(pem: string): Promise<string> {
  const result = await run(
    "openssl",
    ["x509", "-noout", "-fingerprint", "-sha256"],
    new TextEncoder().encode(pem),
  );
  assertEquals(result.code, 0, result.stderr);
  return result.stdout.trim();
}

/** The fingerprint of the certificate a fresh connection to `port` is shown. */
async function servedFingerprint(port: number): Promise<string> {
  const result = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
  ], new Uint8Array());
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(result.stdout);
  assert(pem, `no certificate from s_client: ${result.stderr}`);
  return await fingerprintOfPem(pem[0]);
}

function portOf(server: TlsServer): number {
  return Number(server.address.slice(server.address.lastIndexOf(":") + 1));
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Deterministic bytes: 0, 1, 2, ... 250 repeated. */
function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = i % 251;
  return bytes;
}

const seen: { request: Request; info: RequestInfo }[] = [];
const endless: string[] = [];

const handler: Handler = async (request, info) => {
  seen.push({ request, info });
  const url = new URL(request.url);
  if (url.pathname === "/upload") {
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of request.body!) {
      hash.update(chunk);
      size += chunk.byteLength;
    }
    return Response.json({ size, sha256: hash.digest("hex") });
  }
  if (url.pathname === "/download") {
    const size = Number(url.searchParams.get("size"));
    const all = pattern(size);
    let at = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (at >= size) return controller.close();
        controller.enqueue(all.slice(at, at + 65536));
        at += 65536;
      },
    });
    return new Response(body, { headers: { "content-length": String(size) } });
  }
  if (url.pathname === "/head") {
    return new Response(null, { headers: { "content-length": "1234", "x-test": "yes" } });
  }
  if (url.pathname === "/endless") {
    const chunk = new Uint8Array(65536);
    const body = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(chunk),
      cancel: () => void endless.push("cancelled"),
    });
    info.signal!.addEventListener("abort", () => endless.push("aborted"));
    return new Response(body);
  }
  if (url.pathname === "/slow") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    return new Response("slow\n");
  }
  return Response.json({
    method: request.method,
    path: url.pathname,
    search: url.search,
    host: url.host,
    remoteAddr: info.remoteAddr,
    transport: info.transport,
  });
};

function curl(cacert: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return run("curl", ["-sS", "--cacert", cacert, ...args]);
}

async function withServer(
  minVersion: "1.2" | "1.3",
  fn: (server: TlsServer, dir: string, pair: { cert: string; key: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const pair = await makeCert(dir, "one");
    const server = await startTlsListener(handler, {
      address: "127.0.0.1:0",
      certFile: pair.cert,
      keyFile: pair.key,
      minVersion,
      log: () => {},
    });
    try {
      await fn(server, dir, pair);
    } finally {
      await server.shutdown(1000);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "tls: HTTP/2 via ALPN, HTTP/1.1 on request, request info and URL",
  ignore,
  async fn() {
    await withServer("1.2", async (server, _dir, pair) => {
      const port = portOf(server);
      assertEquals(server.address, `127.0.0.1:${port}`);
      for (const [flag, version] of [["--http2", "2"], ["--http1.1", "1.1"]]) {
        seen.length = 0;
        const result = await curl(pair.cert, [
          flag,
          "-w",
          "\n%{http_version}",
          `https://127.0.0.1:${port}/a%2Fb/c?create=true`,
        ]);
        assertEquals(result.code, 0);
        const [body, negotiated] = result.stdout.split("\n");
        assertEquals(negotiated, version);
        assertEquals(JSON.parse(body), {
          method: "GET",
          path: "/a%2Fb/c",
          search: "?create=true",
          host: `127.0.0.1:${port}`,
          remoteAddr: "127.0.0.1",
          transport: "tls",
        });
        const protocol = version === "2" ? "HTTP/2.0" : "HTTP/1.1";
        const line = formatCombined({ ...seen[0], status: 200, bytes: 0, started: 0 });
        assert(line.includes(`"GET /a%2Fb/c?create=true ${protocol}"`), line);
      }
      const byName = await curl(pair.cert, [
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        `https://localhost:${port}/`,
      ]);
      assertEquals(byName.stdout, "2");
    });
  },
});

Deno.test({
  name: "tls: streaming upload and download over both protocols, HEAD keeps Content-Length",
  ignore,
  async fn() {
    await withServer("1.2", async (server, dir, pair) => {
      const port = portOf(server);
      const size = 8 * 1024 * 1024 + 17;
      const data = pattern(size);
      await Deno.writeFile(`${dir}/up.bin`, data);
      for (const flag of ["--http2", "--http1.1"]) {
        const up = await curl(pair.cert, [
          flag,
          "--data-binary",
          `@${dir}/up.bin`,
          "-H",
          "content-type: application/octet-stream",
          `https://127.0.0.1:${port}/upload`,
        ]);
        assertEquals(up.code, 0, flag);
        assertEquals(JSON.parse(up.stdout), { size, sha256: sha256(data) }, flag);

        const down = await curl(pair.cert, [
          flag,
          "-o",
          `${dir}/down.bin`,
          `https://127.0.0.1:${port}/download?size=${size}`,
        ]);
        assertEquals(down.code, 0, flag);
        assertEquals(sha256(await Deno.readFile(`${dir}/down.bin`)), sha256(data), flag);

        const head = await curl(pair.cert, [flag, "-I", `https://127.0.0.1:${port}/head`]);
        assertEquals(head.code, 0, flag);
        const headers = head.stdout.toLowerCase();
        assert(headers.includes("content-length: 1234"), headers);
        assert(headers.includes("x-test: yes"), headers);
      }
    });
  },
});

Deno.test({
  name: "tls: minimum version 1.3 refuses a TLS 1.2 client, 1.2 accepts it",
  ignore,
  async fn() {
    await withServer("1.3", async (server, _dir, pair) => {
      const url = `https://127.0.0.1:${portOf(server)}/`;
      const old = await curl(pair.cert, ["--tls-max", "1.2", "-o", "/dev/null", url]);
      assertEquals(old.code, 35, "handshake failure expected");
      const modern = await curl(pair.cert, ["--tlsv1.3", "-o", "/dev/null", url]);
      assertEquals(modern.code, 0);
    });
    await withServer("1.2", async (server, _dir, pair) => {
      const url = `https://127.0.0.1:${portOf(server)}/`;
      const result = await curl(pair.cert, ["--tls-max", "1.2", "-w", "%{http_version}", url]);
      assertEquals(result.code, 0);
      assert(result.stdout.endsWith("2"));
    });
  },
});

Deno.test({
  name: "tls: reloadCertificates serves the new pair on the same listener, keeps it on failure",
  ignore,
  async fn() {
    await withServer("1.3", async (server, dir, pair) => {
      const port = portOf(server);
      const first = await fingerprintOfPem(await Deno.readTextFile(pair.cert));
      assertEquals(await servedFingerprint(port), first);

      const next = await makeCert(dir, "two");
      const second = await fingerprintOfPem(await Deno.readTextFile(next.cert));
      assert(first !== second);
      await Deno.copyFile(next.cert, pair.cert);
      await Deno.copyFile(next.key, pair.key);
      await server.reloadCertificates();
      assertEquals(await servedFingerprint(port), second);
      assertEquals(portOf(server), port);
      const ok = await curl(next.cert, [
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        `https://127.0.0.1:${port}/`,
      ]);
      assertEquals(ok.stdout, "2");
      const old = await curl(pair.cert, [
        "--tls-max",
        "1.2",
        "-o",
        "/dev/null",
        `https://127.0.0.1:${port}/`,
      ]);
      assertEquals(old.code, 35, "the minimum version survives a reload");

      // A bad key (here: one that does not match) is refused and the served pair stays.
      const other = await makeCert(dir, "three");
      await Deno.copyFile(other.key, pair.key);
      await assertRejects(
        () => server.reloadCertificates(),
        (error) => String(error).includes("does not match"),
      );
      await Deno.writeTextFile(pair.key, "garbage");
      await assertRejects(() => server.reloadCertificates());
      assertEquals(await servedFingerprint(port), second);
    });
  },
});

Deno.test({
  name: "tls: bad certificate files make startup fail",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const a = await makeCert(dir, "a");
      const b = await makeCert(dir, "b");
      const options = { address: "127.0.0.1:0", minVersion: "1.2" as const };
      await assertRejects(
        () => startTlsListener(handler, { ...options, certFile: `${dir}/missing`, keyFile: a.key }),
        (error) => String(error).includes(`${dir}/missing`),
      );
      await assertRejects(
        () => startTlsListener(handler, { ...options, certFile: a.cert, keyFile: b.key }),
        (error) => String(error).includes("does not match"),
      );
      await assertRejects(
        () => startTlsListener(handler, { ...options, certFile: a.key, keyFile: a.key }),
        (error) => String(error).includes("invalid TLS certificate"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "tls: shutdown lets requests in flight finish, then the port is closed",
  ignore,
  async fn() {
    await withServer("1.2", async (server, _dir, pair) => {
      const port = portOf(server);
      const slow = ["--http2", "--http1.1"].map((flag) =>
        curl(pair.cert, [flag, `https://127.0.0.1:${port}/slow`])
      );
      const size = 3 * 1024 * 1024;
      const downloads = ["--http2", "--http1.1"].map((flag) =>
        curl(pair.cert, [
          flag,
          "--limit-rate",
          "3M",
          "-o",
          "-",
          "-w",
          "%{size_download}",
          `https://127.0.0.1:${port}/download?size=${size}`,
        ])
      );
      await new Promise((resolve) => setTimeout(resolve, 250));
      const started = Date.now();
      await server.shutdown(5000);
      await server.finished;
      assert(Date.now() - started < 4000, "shutdown did not wait for the grace period");
      for (const result of await Promise.all(slow)) {
        assertEquals(result.code, 0);
        assertEquals(result.stdout, "slow\n");
      }
      for (const result of await Promise.all(downloads)) {
        assertEquals(result.code, 0);
        assert(result.stdout.endsWith(String(size)), "the whole body arrived");
      }
      const refused = await curl(pair.cert, ["-o", "/dev/null", `https://127.0.0.1:${port}/`]);
      assertEquals(refused.code, 7, "connection refused after shutdown");
    });
  },
});

Deno.test({
  name: "tls: a client that goes away aborts the request signal and cancels the body",
  ignore,
  async fn() {
    await withServer("1.2", async (server, _dir, pair) => {
      for (const flag of ["--http2", "--http1.1"]) {
        endless.length = 0;
        const result = await curl(pair.cert, [
          flag,
          "--limit-rate",
          "1M",
          "--max-time",
          "1",
          "-o",
          "/dev/null",
          `https://127.0.0.1:${portOf(server)}/endless`,
        ]);
        assertEquals(result.code, 28, flag);
        const deadline = Date.now() + 3000;
        while (endless.length < 2 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assertEquals(endless.toSorted(), ["aborted", "cancelled"], flag);
      }
    });
  },
});

Deno.test({
  name: "tls: shutdown closes idle keep-alive connections at once (HTTP/1.1 and HTTP/2)",
  ignore,
  async fn() {
    await withServer("1.2", async (server) => {
      const port = portOf(server);
      // rustls refuses openssl's self-signed CA:TRUE certificate as an end entity; these
      // connections test connection handling, not verification.
      const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false });
      socket.on("error", () => {});
      const h1Closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      const firstResponse = new Promise<string>((resolve) => {
        socket.once("data", (chunk: Uint8Array) => resolve(decoder.decode(chunk)));
      });
      socket.write("GET /keep HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      assert((await firstResponse).startsWith("HTTP/1.1 200"));

      const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
      const h2Closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
      session.on("error", () => {});
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": "/keep-h2" });
        stream.once("response", (headers) => resolve(Number(headers[":status"])));
        stream.once("error", reject);
        stream.resume();
      });
      assertEquals(status, 200);

      const started = Date.now();
      await server.shutdown(10_000);
      assert(Date.now() - started < 3000, `shutdown took ${Date.now() - started} ms`);
      await h1Closed;
      await h2Closed;
    });
  },
});
