// The stdio personalities started directly (no ssh), as black boxes over their pipes:
// `stowage borgstore-server-rest --stdio --backend FILE:<rel path>` with a working directory
// (spec §15.13 items 130–134, 138, 139, and EOF inside a body storing nothing), and
// `stowage serve restic --stdio <path>` driven by a node:http2 client over the child's pipes
// (restic's rclone: backend), exiting 0 on stdin EOF.

import http2 from "node:http2";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { MAIN, randomBytes, sha256Hex, treeSnapshot } from "./_server.ts";
import { childDuplex } from "./_child_duplex.ts";

const MEDIA = "application/vnd.x.borgstore.rest.v1";
const RESTIC_V2 = "application/vnd.x.restic.rest.v2";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TIMEOUT_MS = 20_000;

function spawn(args: string[], cwd?: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Resolves with the exit status, or kills the child and rejects after `ms`. */
function exitWithin(child: Deno.ChildProcess, ms = TIMEOUT_MS): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    child.status.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        reject(new Error(`child still running after ${ms} ms`));
      }, ms);
    }),
  ]);
}

// ---------------------------------------------------------------------------------------------
// borgstore-server-rest --stdio

interface Parsed {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
  text: string;
}

/** A request as borgstore's stdio client writes it (no Host header). */
function req(
  method: string,
  target: string,
  body = "",
  headers: Record<string, string> = {},
): string {
  let head = `${method} ${target} HTTP/1.1\r\nAccept: ${MEDIA}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (!("Connection" in headers)) head += "Connection: keep-alive\r\n";
  if (method === "POST" || method === "DELETE") head += `Content-Length: ${body.length}\r\n`;
  return head + "\r\n" + body;
}

/**
 * Parses consecutive responses the way the stdio client reads them: status line, headers, then
 * exactly Content-Length bytes unless HEAD. Throws unless the bytes are used up exactly.
 */
function parseAll(bytes: Uint8Array, heads: boolean[]): Parsed[] {
  const out: Parsed[] = [];
  let at = 0;
  while (at < bytes.length) {
    let end = -1;
    for (let i = at; i + 3 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
        end = i;
        break;
      }
    }
    if (end < 0) throw new Error(`trailing non-HTTP output: ${decoder.decode(bytes.slice(at))}`);
    const lines = decoder.decode(bytes.subarray(at, end)).split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
    if (!match) throw new Error(`not a status line: ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    assert(headers.has("content-length"), `response ${out.length} has Content-Length`);
    const length = heads[out.length] ? 0 : Number(headers.get("content-length"));
    if (end + 4 + length > bytes.length) throw new Error("short response body");
    const body = bytes.slice(end + 4, end + 4 + length);
    out.push({ status: Number(match[1]), headers, body, text: decoder.decode(body) });
    at = end + 4 + length;
  }
  return out;
}

/** Runs the borgstore stdio personality with `input` on stdin (then EOF). */
async function borgstoreStdio(
  input: string | Uint8Array,
  options: { cwd: string; backend?: string },
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = spawn([
    "borgstore-server-rest",
    "--stdio",
    "--backend",
    options.backend ?? "FILE:rel/path",
  ], options.cwd);
  const stdout = new Response(child.stdout).bytes();
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  await writer.write(typeof input === "string" ? encoder.encode(input) : input);
  await writer.close();
  const status = await exitWithin(child);
  return { code: status.code, stdout: await stdout, stderr: await stderr };
}

async function tempDir(): Promise<string> {
  return await Deno.realPath(await Deno.makeTempDir({ prefix: "stowage-stdio-" }));
}

Deno.test("stdio borgstore: 130–132, 138: five framed responses, no Host, exit 0 on EOF, FILE:rel", async () => {
  const cwd = await tempDir();
  try {
    const input = [
      req("POST", "/?cmd=create"),
      req("POST", "/item1", "hello", { "X-Content-hash-sha256": sha256Hex("hello") }),
      req("HEAD", "/nonexistent"),
      req("GET", "/"),
      req("HEAD", "/item1"),
    ].join("");
    assert(!/host:/i.test(input), "no Host header is sent");
    const run = await borgstoreStdio(input, { cwd });
    assertEquals(run.code, 0, run.stderr);
    const responses = parseAll(run.stdout, [false, false, true, false, true]);
    assertEquals(responses.map((r) => r.status), [200, 200, 404, 200, 200], run.stderr);
    assertEquals(responses[2].body.length, 0);
    const listing = JSON.parse(responses[3].text) as {
      name: string;
      size: number;
      directory: boolean;
      atime: number;
    }[];
    assertEquals(listing.map((e) => [e.name, e.size, e.directory]), [["item1", 5, false]]);
    assert(listing[0].atime > 0, "atime > 0");
    assertEquals(responses[4].headers.get("content-length"), "5");
    assertEquals(responses[4].headers.get("x-borgstore-is-directory"), "false");
    assertMatch(run.stderr, /BorgStore REST server listening on stdin\/stdout/);
    // 138: FILE:rel/path is relative to the working directory
    assertEquals(await Deno.readTextFile(`${cwd}/rel/path/item1`), "hello");
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("stdio borgstore: 133: POST / with body xx → 400, then a correct listing", async () => {
  const cwd = await tempDir();
  try {
    const input = req("POST", "/?cmd=create") + req("POST", "/", "xx") + req("GET", "/");
    const run = await borgstoreStdio(input, { cwd });
    assertEquals(run.code, 0, run.stderr);
    const responses = parseAll(run.stdout, [false, false, false]);
    assertEquals(responses.map((r) => r.status), [200, 400, 200], run.stderr);
    assertEquals(JSON.parse(responses[2].text), []);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("stdio borgstore: 134: Connection: close is ignored, the next request is answered", async () => {
  const cwd = await tempDir();
  try {
    const input = req("POST", "/?cmd=create", "", { Connection: "close" }) +
      req("POST", "/a", "abc") + req("GET", "/a", "", { Connection: "close" }) + req("GET", "/");
    const run = await borgstoreStdio(input, { cwd });
    assertEquals(run.code, 0, run.stderr);
    const responses = parseAll(run.stdout, [false, false, false, false]);
    assertEquals(responses.map((r) => r.status), [200, 200, 200, 200], run.stderr);
    assertEquals(responses[2].text, "abc");
    assertEquals(JSON.parse(responses[3].text).map((e: { name: string }) => e.name), ["a"]);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("stdio borgstore: 139: --backend bogus://x → non-zero exit, Invalid backend URL", async () => {
  const cwd = await tempDir();
  try {
    const run = await borgstoreStdio(req("POST", "/?cmd=create"), { cwd, backend: "bogus://x" });
    assert(run.code !== 0, "non-zero exit");
    assertMatch(run.stderr, /Invalid backend URL: bogus:\/\/x/);
    assertEquals(run.stdout.length, 0, "nothing on stdout");
    assertEquals(await treeSnapshot(cwd), new Map());
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("stdio borgstore: EOF inside a request body stores nothing", async () => {
  const cwd = await tempDir();
  try {
    const created = await borgstoreStdio(req("POST", "/?cmd=create"), { cwd });
    assertEquals(created.code, 0, created.stderr);
    const before = await treeSnapshot(`${cwd}/rel/path`);
    const whole = randomBytes(300_000);
    for (const hashed of [false, true]) {
      // the head announces 300000 bytes; only 100000 arrive before EOF
      const head = `POST /packs/aa/cut HTTP/1.1\r\nAccept: ${MEDIA}\r\n` +
        (hashed ? `X-Content-hash-sha256: ${sha256Hex(whole)}\r\n` : "") +
        `Connection: keep-alive\r\nContent-Length: ${whole.length}\r\n\r\n`;
      const partial = new Uint8Array(head.length + 100_000);
      partial.set(encoder.encode(head));
      partial.set(whole.subarray(0, 100_000), head.length);
      const run = await borgstoreStdio(partial, { cwd });
      const responses = parseAll(run.stdout, [false]);
      assert(responses.length <= 1, "at most one response");
      if (responses.length === 1) assert(responses[0].status !== 200, "not stored");
      assertEquals(await treeSnapshot(`${cwd}/rel/path`), before, `nothing stored (${hashed})`);
    }
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// serve restic --stdio (HTTP/2 with prior knowledge)

/** A node Duplex over a child's stdin (writes) and stdout (reads). */

interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
}

function h2(
  client: http2.ClientHttp2Session,
  method: string,
  path: string,
  body?: Uint8Array,
  headers: Record<string, string> = {},
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ":method": method, ":path": path, ...headers }, {
      endStream: body === undefined,
    });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Uint8Array[] = [];
    stream.on("response", (h) => responseHeaders = h);
    stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    stream.on("end", () => {
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      chunks.reduce((o, c) => (all.set(c, o), o + c.length), 0);
      resolve({ status: Number(responseHeaders[":status"]), headers: responseHeaders, body: all });
    });
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

async function resticSession(
  extraFlags: string[],
  use: (client: http2.ClientHttp2Session, cwd: string) => Promise<void>,
): Promise<void> {
  const cwd = await tempDir();
  try {
    const child = spawn(["serve", "restic", "--stdio", ...extraFlags, "rel/repo"], cwd);
    const stderr = new Response(child.stderr).text();
    const client = http2.connect("http://localhost", {
      createConnection: () => childDuplex(child),
    });
    client.on("error", () => {});
    try {
      await use(client, cwd);
    } finally {
      // node sends GOAWAY and ends the connection: the child sees EOF on stdin
      client.close();
    }
    const status = await exitWithin(child);
    const log = await stderr;
    assertEquals(status.code, 0, log);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("stdio restic: serve restic --stdio <rel path> over HTTP/2: create, upload, list, get; exit 0 on EOF", async () => {
  await resticSession(["--b2-hard-delete"], async (client, cwd) => {
    const probe = await h2(client, "GET", "/file-1234567890123", undefined, { accept: RESTIC_V2 });
    assertEquals(probe.status, 404, "readiness probe answered");
    assertEquals((await h2(client, "POST", "/?create=true")).status, 200);
    const config = encoder.encode("not really a restic config");
    assertEquals((await h2(client, "POST", "/config", config)).status, 200);
    const head = await h2(client, "HEAD", "/config");
    assertEquals(head.status, 200);
    assertEquals(head.headers["content-length"], String(config.length));

    const blobs = [randomBytes(2 * 1024 * 1024 + 5), randomBytes(1000), new Uint8Array()];
    const ids = blobs.map((b) => sha256Hex(b));
    const uploads = await Promise.all(
      blobs.map((b, i) => h2(client, "POST", `/data/${ids[i]}`, b)),
    );
    assertEquals(uploads.map((u) => u.status), [200, 200, 200]);
    const wrong = await h2(client, "POST", `/data/${"0".repeat(64)}`, encoder.encode("x"));
    assert(wrong.status >= 400, `an upload under the wrong id is refused (${wrong.status})`);

    const list = await h2(client, "GET", "/data/", undefined, { accept: RESTIC_V2 });
    assertEquals(list.status, 200);
    const entries = JSON.parse(decoder.decode(list.body)) as { name: string; size: number }[];
    assertEquals(
      entries.map((e) => [e.name, e.size]).sort(),
      ids.map((id, i) => [id, blobs[i].length]).sort(),
    );
    const got = await h2(client, "GET", `/data/${ids[0]}`);
    assertEquals(got.status, 200);
    assertEquals(sha256Hex(got.body), ids[0]);
    const part = await h2(client, "GET", `/data/${ids[0]}`, undefined, { range: "bytes=10-19" });
    assertEquals(part.status, 206);
    assertEquals(part.body, blobs[0].slice(10, 20));
    const file = `${cwd}/rel/repo/data/${ids[1].slice(0, 2)}/${ids[1]}`;
    assertEquals(sha256Hex(await Deno.readFile(file)), ids[1], "repository relative to cwd");
  });
});

Deno.test("stdio restic: --append-only refuses deletes except locks", async () => {
  await resticSession(["--append-only"], async (client) => {
    assertEquals((await h2(client, "POST", "/?create=true")).status, 200);
    const blob = randomBytes(100);
    const id = sha256Hex(blob);
    assertEquals((await h2(client, "POST", `/data/${id}`, blob)).status, 200);
    assertEquals((await h2(client, "DELETE", `/data/${id}`)).status, 403);
    assertEquals((await h2(client, "GET", `/data/${id}`)).status, 200);
    const lock = encoder.encode("{}");
    const lockId = sha256Hex(lock);
    assertEquals((await h2(client, "POST", `/locks/${lockId}`, lock)).status, 200);
    assertEquals((await h2(client, "DELETE", `/locks/${lockId}`)).status, 200);
  });
});
