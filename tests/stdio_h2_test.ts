// HTTP/2 with prior knowledge over stdin/stdout (src/transport/stdio_h2.ts): a node:http2 client
// over the child's pipes (concurrency, flow control, HEAD, GOAWAY from the client), a raw Go-style
// exchange whose first stream is 3, stdin EOF with a stream in flight, the TTY refusal, and a
// short real restic run against the trivial handler.

import http2 from "node:http2";
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { GoawayFilter } from "../src/transport/stdio_h2.ts";
import { patternBytes } from "./fixtures/echo_handler.ts";
import { childDuplex } from "./_child_duplex.ts";

const FIXTURE = new URL("./fixtures/stdio_h2_echo.ts", import.meta.url).pathname;
const decoder = new TextDecoder();
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function spawnFixture(): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", FIXTURE],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** A node Duplex over a child's stdin (writes) and stdout (reads). */

interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
}

function request(
  client: http2.ClientHttp2Session,
  method: string,
  path: string,
  body?: Uint8Array,
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ":method": method, ":path": path }, {
      endStream: body === undefined,
    });
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Uint8Array[] = [];
    stream.on("response", (h) => headers = h);
    stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    stream.on("end", () => {
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      chunks.reduce((o, c) => (all.set(c, o), o + c.length), 0);
      resolve({ status: Number(headers[":status"]), headers, body: all });
    });
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

/** Resolves with the exit status, or rejects after `ms`. */
function exitWithin(child: Deno.ChildProcess, ms: number): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    child.status.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`child still running after ${ms} ms`)), ms);
    }),
  ]);
}

const json = (r: H2Result) => JSON.parse(decoder.decode(r.body));

Deno.test("stdio h2: GOAWAY filter drops only GOAWAY frames, across any chunking", () => {
  const preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const frame = (type: number, stream: number, payload: number[]) =>
    new Uint8Array([
      (payload.length >> 16) & 255,
      (payload.length >> 8) & 255,
      payload.length & 255,
      type,
      0,
      (stream >> 24) & 127,
      (stream >> 16) & 255,
      (stream >> 8) & 255,
      stream & 255,
      ...payload,
    ]);
  const settings = frame(4, 0, [0, 3, 0, 0, 0, 100]);
  const goaway = frame(7, 0, [0, 0, 0, 0, 0, 0, 0, 0]);
  const data = frame(0, 3, Array.from({ length: 40 }, (_, i) => i));
  const ping = frame(6, 0, [1, 2, 3, 4, 5, 6, 7, 8]);
  const input = [preface, settings, data, goaway, ping, goaway, data];
  const expected = [preface, settings, data, ping, data];
  const flat = (parts: Uint8Array[]) => {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
    return all;
  };
  const whole = flat(input);
  for (const size of [1, 2, 5, 9, 10, 17, 64, whole.length]) {
    const filter = new GoawayFilter();
    const out: Uint8Array[] = [];
    for (let i = 0; i < whole.length; i += size) out.push(...filter.push(whole.slice(i, i + size)));
    assertEquals(flat(out), flat(expected), `chunk size ${size}`);
    assertEquals(filter.dropped, 2);
  }
});

Deno.test("stdio h2: concurrent requests, flow control, HEAD; client GOAWAY then EOF → exit 0", async () => {
  const child = spawnFixture();
  const stderr = new Response(child.stderr).text();
  const duplex = childDuplex(child);
  const client = http2.connect("http://localhost", { createConnection: () => duplex });
  client.on("error", () => {});
  const upload = patternBytes(1, 8 * 1024 * 1024 + 17);
  const echo = patternBytes(2, 3 * 1024 * 1024);
  const rejected = patternBytes(3, 2 * 1024 * 1024);
  const [info, head, hash, echoed, reject, stream, missing, fixed] = await Promise.all([
    request(client, "GET", "/info"),
    request(client, "HEAD", "/config"),
    request(client, "POST", "/hash", upload),
    request(client, "POST", "/echo", echo),
    request(client, "POST", "/reject", rejected),
    request(client, "GET", "/stream?bytes=5000000"),
    request(client, "GET", "/missing"),
    request(client, "GET", "/fixed?bytes=100000"),
  ]);
  // a stream the client resets mid-upload, and a handler that throws, hurt no other stream (what
  // the reset stream's handler sees is checked with raw frames below: Deno's client sends an
  // empty END_STREAM DATA frame before its RST_STREAM)
  const cancelled = client.request({ ":method": "POST", ":path": "/hash" });
  cancelled.on("error", () => {});
  cancelled.write(patternBytes(0, 100_000));
  await new Promise((resolve) => setTimeout(resolve, 100));
  cancelled.close(http2.constants.NGHTTP2_CANCEL);
  const thrown = await request(client, "GET", "/throw");
  // after a rejected unread upload the connection still has flow-control credit
  const after = await request(client, "POST", "/hash", upload.subarray(0, 4 * 1024 * 1024));

  assertEquals(info.status, 200);
  assertEquals(json(info).url, "http://stdio/info");
  assertMatch(json(info).host, /^localhost(:80)?$/);
  assertEquals(json(info).transport, "stdio");
  assertEquals(head.status, 200);
  assertEquals(head.headers["content-length"], "12345");
  assertEquals(head.body.length, 0);
  assertEquals(json(hash), { bytes: upload.length, sha256: sha256(upload) });
  assertEquals(sha256(echoed.body), sha256(echo));
  assertEquals(reject.status, 403);
  assertEquals(stream.body.length, 5_000_000);
  assertEquals(sha256(stream.body), sha256(patternBytes(0, 5_000_000)));
  assertEquals(missing.status, 404);
  assertEquals(fixed.headers["content-length"], "100000");
  assertEquals(fixed.body, patternBytes(0, 100000));
  assertEquals(thrown.status, 500);
  assertEquals(json(after).bytes, 4 * 1024 * 1024);

  // node's close() sends GOAWAY, then ends the connection: the child must survive the GOAWAY
  client.close();
  const status = await exitWithin(child, 10_000);
  const log = await stderr;
  assertEquals(status.code, 0, log);
  assertMatch(log, /handler failed: Error: handler exploded/);
  assertMatch(log, /stdio-h2 done/);
});

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = (payload.length >> 16) & 255;
  out[1] = (payload.length >> 8) & 255;
  out[2] = payload.length & 255;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, stream & 0x7fffffff);
  out.set(payload, 9);
  return out;
}

/** HPACK: literal header field without indexing, indexed name, raw string value. */
function literal(nameIndex: number, value: string): number[] {
  const bytes = [...new TextEncoder().encode(value)];
  return [nameIndex, bytes.length, ...bytes];
}

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Uint8Array;
}

/** Reads server frames from the child's stdout, ACKing its SETTINGS. */
function frameReader(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  writer: WritableStreamDefaultWriter<Uint8Array>,
) {
  let buffered = new Uint8Array(0);
  return async function next(): Promise<Frame> {
    while (true) {
      if (buffered.length >= 9) {
        const length = (buffered[0] << 16) | (buffered[1] << 8) | buffered[2];
        if (buffered.length >= 9 + length) {
          const view = new DataView(buffered.buffer, buffered.byteOffset);
          const f: Frame = {
            type: buffered[3],
            flags: buffered[4],
            stream: view.getUint32(5) & 0x7fffffff,
            payload: buffered.slice(9, 9 + length),
          };
          buffered = buffered.slice(9 + length);
          if (f.type === 4 && (f.flags & 1) === 0) {
            await writer.write(frame(4, 1, 0, new Uint8Array()));
          }
          return f;
        }
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("stdout ended early");
      const merged = new Uint8Array(buffered.length + value.length);
      merged.set(buffered);
      merged.set(value, buffered.length);
      buffered = merged;
    }
  };
}

/** Collects the response of `stream`: :status 200 seen, and the body text. */
async function readResponse(next: () => Promise<Frame>, stream: number) {
  let status200 = false;
  let body = "";
  while (true) {
    const f = await next();
    if (f.type === 7) throw new Error("server sent GOAWAY");
    if (f.stream !== stream) continue;
    if (f.type === 1) status200 = f.payload[0] === 0x88; // indexed :status 200
    if (f.type === 0) body += decoder.decode(f.payload);
    if ((f.type === 0 || f.type === 1) && (f.flags & 1) !== 0) return { status200, body };
  }
}

Deno.test("stdio h2: Go-style client: first stream 3, a reset upload, the connection lives", async () => {
  const child = spawnFixture();
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  const next = frameReader(reader, writer);
  await writer.write(new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  // SETTINGS as Go sends them: ENABLE_PUSH=0, INITIAL_WINDOW_SIZE=4 MiB; then a WINDOW_UPDATE
  await writer.write(frame(4, 0, 0, new Uint8Array([0, 2, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0])));
  await writer.write(frame(8, 0, 0, new Uint8Array([0x40, 0, 0, 0])));
  // GET /info on stream 3: :method GET (0x82), :scheme http (0x86), :authority, :path
  const authority = literal(1, "localhost");
  const getInfo = new Uint8Array([0x82, 0x86, ...authority, ...literal(4, "/info")]);
  await writer.write(frame(1, 0x5, 3, getInfo));
  const first = await readResponse(next, 3);
  assert(first.status200, "HEADERS on stream 3 carry :status 200");
  assertEquals(JSON.parse(first.body).url, "http://stdio/info");

  // POST /hash on stream 5 (:method POST is 0x83), 10 bytes of DATA, then RST_STREAM(CANCEL)
  const post = new Uint8Array([0x83, 0x86, ...authority, ...literal(4, "/hash")]);
  await writer.write(frame(1, 0x4, 5, post));
  await writer.write(frame(0, 0, 5, new TextEncoder().encode("0123456789")));
  await new Promise((resolve) => setTimeout(resolve, 100));
  await writer.write(frame(3, 0, 5, new Uint8Array([0, 0, 0, 8])));
  await writer.write(frame(1, 0x5, 7, getInfo));
  const third = await readResponse(next, 7);
  assert(third.status200, "stream 7 answered after the reset of stream 5");

  await writer.close();
  reader.releaseLock();
  await child.stdout.cancel();
  const status = await exitWithin(child, 10_000);
  const log = await stderr;
  assertEquals(status.code, 0, log);
  assertMatch(log, /body error: request body aborted/);
});

Deno.test("stdio h2: stdin EOF with an upload in flight ends it and exits 0", async () => {
  const child = spawnFixture();
  const stderr = new Response(child.stderr).text();
  const duplex = childDuplex(child);
  const client = http2.connect("http://localhost", { createConnection: () => duplex });
  client.on("error", () => {});
  const info = await request(client, "GET", "/info");
  assertEquals(info.status, 200);
  const stream = client.request({ ":method": "POST", ":path": "/hash" });
  stream.on("error", () => {});
  stream.write(patternBytes(0, 1000));
  await new Promise((resolve) => setTimeout(resolve, 200));
  duplex.end(); // EOF on the child's stdin; the upload never finishes
  const started = performance.now();
  const status = await exitWithin(child, 10_000);
  const log = await stderr;
  client.destroy();
  assertEquals(status.code, 0, log);
  assert(performance.now() - started < 8000, "exited within the grace period");
  assertMatch(log, /body error/);
});

Deno.test({
  name: "stdio h2: refuses to run with stdout on a terminal",
  ignore: peerMissing("script"),
  fn: async () => {
    const command = `${Deno.execPath()} run -A --quiet ${FIXTURE}`;
    const out = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    assertMatch(text, /refusing to run HTTP2 server directly on a terminal/);
    assertEquals(out.code, 2);
  },
});

Deno.test({
  name: "stdio h2: real restic talks to it through rclone.program",
  ignore: peerMissing("restic"),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "stowage-h2-restic-" });
    try {
      const program = `${Deno.execPath()} run -A --quiet ${FIXTURE}`;
      const out = await new Deno.Command("restic", {
        args: ["-o", `rclone.program=${program}`, "-r", "rclone:repo", "cat", "config"],
        env: {
          RESTIC_PASSWORD: "x",
          RESTIC_CACHE_DIR: `${dir}/cache`,
          STOWAGE_TEST_DONE_FILE: `${dir}/done`,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = decoder.decode(out.stderr);
      // restic probed, asked for the config and the keys over HTTP/2 (first stream 3), found no
      // key and gave up: that is all the trivial handler can offer
      assertMatch(text, /rclone: req GET \/file-\d+/);
      assertMatch(text, /rclone: req HEAD \/config/);
      assertMatch(text, /rclone: req GET \/keys\//);
      assertMatch(text, /wrong password or no key found/);
      assert(!/error talking HTTP|exit status|signal/.test(text), text);
      // restic closed the pipes on exit: the child must end normally on that EOF
      let done = "";
      for (let i = 0; i < 100 && done === ""; i++) {
        done = await Deno.readTextFile(`${dir}/done`).catch(() => "");
        if (done === "") await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assertEquals(done, "done");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
