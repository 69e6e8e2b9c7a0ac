// HTTP/1.1 over stdin/stdout (src/transport/stdio_h1.ts): framing, resynchronisation after
// refusals, body errors, spooling of length-less responses, exit status, and a 1 GiB upload in
// constant memory. Most cases run the fixture as a child process with piped stdio.

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { serveStdioHttp1 } from "../src/transport/stdio_h1.ts";
import { echoHandler, patternBytes } from "./fixtures/echo_handler.ts";
import { concatChunks } from "./_server.ts";

const FIXTURE = new URL("./fixtures/stdio_h1_echo.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const enc = (text: string) => encoder.encode(text);
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

interface Parsed {
  status: number;
  reason: string;
  headers: Map<string, string>;
  body: Uint8Array;
}

function indexOfCrlfCrlf(bytes: Uint8Array, from: number): number {
  for (let i = from; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/**
 * Parses consecutive responses the way borgstore's stdio client does: status line, headers,
 * then exactly Content-Length bytes unless the request was HEAD. `heads` says, per response,
 * whether its request was HEAD. Interim 1xx responses are returned too (they carry no body).
 * Returns the responses and how many bytes they used.
 */
function parseResponses(bytes: Uint8Array, heads: boolean[]): { list: Parsed[]; used: number } {
  const list: Parsed[] = [];
  let offset = 0;
  let index = 0;
  while (offset < bytes.length) {
    const end = indexOfCrlfCrlf(bytes, offset);
    if (end < 0) break;
    const lines = decoder.decode(bytes.subarray(offset, end)).split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(lines[0]);
    if (!match) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const status = Number(match[1]);
    let length = 0;
    if (status >= 200) {
      length = heads[index++] ? 0 : Number(headers.get("content-length") ?? "0");
    }
    if (end + 4 + length > bytes.length) break;
    list.push({
      status,
      reason: match[2],
      headers,
      body: bytes.slice(end + 4, end + 4 + length),
    });
    offset = end + 4 + length;
  }
  return { list, used: offset };
}

interface RunResult {
  stdout: Uint8Array;
  stderr: string;
  code: number;
}

/** Runs the fixture, writes all of `input` (then closes stdin), collects everything. */
async function run(input: Uint8Array[], env: Record<string, string> = {}): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", FIXTURE],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  const output = child.output();
  const writer = child.stdin.getWriter();
  try {
    for (const part of input) await writer.write(part);
    await writer.close();
  } catch {
    // the child may stop reading early (that is part of some tests)
  }
  const result = await output;
  return { stdout: result.stdout, stderr: decoder.decode(result.stderr), code: result.code };
}

const json = (p: Parsed) => JSON.parse(decoder.decode(p.body));

Deno.test("stdio h1: pipelined requests, HEAD framing, no Host, chunked body, exit 0", async () => {
  const hello = enc("hello");
  const input = [
    enc("GET /info HTTP/1.1\r\nAccept: x\r\nConnection: keep-alive\r\n\r\n"),
    enc("POST /hash HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
    enc("HEAD /anything HTTP/1.1\r\n\r\n"),
    enc("POST /hash HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    enc("3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n"),
    enc("GET /stream?bytes=70000 HTTP/1.1\r\n\r\n"),
    enc("GET /fixed?bytes=1000 HTTP/1.1\r\n\r\n"),
    enc("POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"),
    enc("DELETE /missing HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    enc("GET /throw HTTP/1.1\r\n\r\n"),
    enc("GET http://elsewhere.example/info?q=1 HTTP/1.1\r\n\r\n"),
  ];
  // everything in one write: the server must find the request boundaries itself
  const all = new Uint8Array(input.reduce((n, p) => n + p.length, 0));
  input.reduce((offset, p) => (all.set(p, offset), offset + p.length), 0);
  const result = await run([all]);
  assertEquals(result.code, 0, result.stderr);
  const heads = [false, false, true, false, false, false, false, false, false, false];
  const { list, used } = parseResponses(result.stdout, heads);
  assertEquals(used, result.stdout.length, "stdout holds nothing but the responses");
  assertEquals(list.map((r) => r.status), [200, 200, 200, 200, 200, 200, 200, 404, 500, 200]);
  for (const r of list) assert(r.headers.has("content-length"), "every response has a length");
  assert(list.every((r) => !r.headers.has("transfer-encoding")));

  const info = json(list[0]);
  assertEquals(info.url, "http://stdio/info");
  assertEquals(info.host, null);
  assertEquals(info.transport, "stdio");
  assertEquals(json(list[1]), { bytes: 5, sha256: sha256(hello) });
  assertEquals(list[2].headers.get("content-length"), "12345");
  assertEquals(list[2].headers.get("x-head"), "yes");
  assertEquals(json(list[3]), { bytes: 5, sha256: sha256(hello) });
  assertEquals(list[4].headers.get("content-length"), "70000");
  assertEquals(list[4].body, patternBytes(0, 70000));
  assertEquals(list[5].body, patternBytes(0, 1000));
  assertEquals(decoder.decode(list[6].body), "xyz");
  assertEquals(json(list[9]).url, "http://stdio/info?q=1");
  assertMatch(result.stderr, /stdio-h1 done/);
});

Deno.test("stdio h1: a rejected request with an unread body does not desync the stream", async () => {
  // the unread body looks like requests: if the server did not skip it, it would answer them
  const bait = enc("GET /info HTTP/1.1\r\n\r\n".repeat(50_000));
  const payload = patternBytes(5, 300_000);
  const result = await run([
    enc(`POST /reject HTTP/1.1\r\nContent-Length: ${bait.length}\r\n\r\n`),
    bait,
    enc("POST /reject HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"),
    enc(`GET /info HTTP/1.1\r\nContent-Length: ${bait.length}\r\n\r\n`),
    bait,
    enc(`POST /hash HTTP/1.1\r\nContent-Length: ${payload.length}\r\n\r\n`),
    payload,
  ]);
  assertEquals(result.code, 0, result.stderr);
  const { list, used } = parseResponses(result.stdout, [false, false, false, false]);
  assertEquals(used, result.stdout.length);
  assertEquals(list.map((r) => r.status), [403, 403, 200, 200]);
  assertEquals(decoder.decode(list[0].body), "rejected");
  assertEquals(json(list[3]), { bytes: payload.length, sha256: sha256(payload) });
});

Deno.test("stdio h1: EOF inside a body errors the body stream, then the server exits 0", async () => {
  const result = await run([
    enc("GET /info HTTP/1.1\r\n\r\n"),
    enc("POST /hash HTTP/1.1\r\nContent-Length: 1000\r\n\r\n0123456789"),
  ]);
  assertEquals(result.code, 0, result.stderr);
  assertMatch(result.stderr, /body error: unexpected end of input/);
  const { list, used } = parseResponses(result.stdout, [false, false]);
  assertEquals(used, result.stdout.length);
  assertEquals(list.map((r) => r.status), [200, 400]);
});

Deno.test("stdio h1: EOF inside a chunked body and inside a head", async () => {
  const chunked = await run([
    enc("POST /hash HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"),
  ]);
  assertEquals(chunked.code, 0);
  assertMatch(chunked.stderr, /body error/);
  const head = await run([enc("GET /info HTTP/1.1\r\nAccept: x\r\n")]);
  assertEquals(head.code, 0);
  assertEquals(head.stdout.length, 0);
});

Deno.test("stdio h1: limits answer 414/431 and resynchronise; garbage stops the server", async () => {
  const longTarget = "/" + "a".repeat(70 * 1024);
  const manyHeaders = Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join("");
  const result = await run([
    enc(`GET ${longTarget} HTTP/1.1\r\n\r\n`),
    enc("GET /info HTTP/1.1\r\n\r\n"),
    enc(`GET /info HTTP/1.1\r\nX-Long: ${"b".repeat(70 * 1024)}\r\n\r\n`),
    enc(`POST /hash HTTP/1.1\r\n${manyHeaders}Content-Length: 5\r\n\r\nhello`),
    enc("POST /hash HTTP/1.1\r\n folded: x\r\nContent-Length: 5\r\n\r\nhello"),
    enc("GET /info HTTP/1.1\r\n\r\n"),
    enc("this is not http\r\n\r\n"),
    enc("GET /info HTTP/1.1\r\n\r\n"),
  ]);
  assertEquals(result.code, 0, result.stderr);
  const { list, used } = parseResponses(result.stdout, [false, false, false, false, false, false]);
  assertEquals(used, result.stdout.length);
  assertEquals(list.map((r) => r.status), [414, 200, 431, 431, 400, 200, 400]);
  assertMatch(result.stderr, /malformed request line; stopping/);
});

Deno.test("stdio h1: conflicting framing is answered and stops the server", async () => {
  const result = await run([
    enc("POST /hash HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello"),
    enc("GET /info HTTP/1.1\r\n\r\n"),
  ]);
  assertEquals(result.code, 0);
  const { list } = parseResponses(result.stdout, [false]);
  assertEquals(list.map((r) => r.status), [400]);
});

Deno.test("stdio h1: Expect 100-continue, Connection: close ignored", async () => {
  const result = await run([
    enc("POST /hash HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"),
    enc("GET /info HTTP/1.1\r\nConnection: close\r\n\r\n"),
    enc("GET /info HTTP/1.0\r\n\r\n"),
  ]);
  assertEquals(result.code, 0);
  const { list, used } = parseResponses(result.stdout, [false, false, false]);
  assertEquals(used, result.stdout.length);
  assertEquals(list.map((r) => r.status), [100, 200, 200, 200]);
  assertEquals(decoder.decode(result.stdout.subarray(0, 25)), "HTTP/1.1 100 Continue\r\n\r\n");
});

Deno.test("stdio h1: length-less responses are measured in memory or spooled to a temp file", async () => {
  const result = await run([
    enc("GET /stream?bytes=1000000 HTTP/1.1\r\n\r\n"),
    enc("GET /stream?bytes=1000 HTTP/1.1\r\n\r\n"),
    enc("GET /stream?bytes=0 HTTP/1.1\r\n\r\n"),
    enc("HEAD /x HTTP/1.1\r\n\r\n"),
  ], { STOWAGE_TEST_BUFFER: "65536" });
  assertEquals(result.code, 0, result.stderr);
  const { list, used } = parseResponses(result.stdout, [false, false, false, true]);
  assertEquals(used, result.stdout.length);
  assertEquals(list[0].headers.get("content-length"), "1000000");
  assertEquals(sha256(list[0].body), sha256(patternBytes(0, 1_000_000)));
  assertEquals(list[1].body, patternBytes(0, 1000));
  assertEquals(list[2].headers.get("content-length"), "0");
});

Deno.test("stdio h1: in-process, Deno.Reader input and a handler that ignores bodies", async () => {
  const text = "POST /reject HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /info HTTP/1.1\r\n\r\n";
  const handlerLogs: string[] = [];
  // a reader that hands out at most 7 bytes at a time, to split every token
  const { all, logs } = await serveInProcess(text, echoHandler((l) => handlerLogs.push(l)), 7);
  const { list, used } = parseResponses(all, [false, false]);
  assertEquals(used, all.length);
  assertEquals(list.map((r) => r.status), [403, 200]);
  assertEquals([...handlerLogs, ...logs], ["req POST /reject", "req GET /info"]);
});

Deno.test({
  name: "stdio h1: a 1 GiB upload streams through in constant memory",
  fn: async () => {
    const GiB = 1024 * 1024 * 1024;
    const block = patternBytes(11, 1024 * 1024);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", FIXTURE],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    const received: Uint8Array[] = [];
    const response = (async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) throw new Error("stdout ended before the response");
        received.push(value);
        const all = new Uint8Array(received.reduce((n, c) => n + c.length, 0));
        received.reduce((o, c) => (all.set(c, o), o + c.length), 0);
        const { list } = parseResponses(all, [false]);
        if (list.length === 1) return list[0];
      }
    })();

    const started = performance.now();
    const expected = createHash("sha256");
    const writer = child.stdin.getWriter();
    await writer.write(enc(`POST /hash HTTP/1.1\r\nContent-Length: ${GiB}\r\n\r\n`));
    for (let i = 0; i < 1024; i++) {
      await writer.write(block);
      expected.update(block);
    }
    const parsed = await response;
    const seconds = (performance.now() - started) / 1000;
    const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
    const hwmKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
    await writer.close();
    reader.releaseLock();
    await child.stdout.cancel();
    const exit = await child.status;
    await stderr;

    assertEquals(parsed.status, 200);
    assertEquals(json(parsed), { bytes: GiB, sha256: expected.digest("hex") });
    assert(hwmKiB > 0, "VmHWM readable");
    assert(hwmKiB < 200 * 1024, `child peak RSS ${Math.round(hwmKiB / 1024)} MiB (limit 200)`);
    assertEquals(exit.code, 0);
    console.log(
      `1 GiB in ${seconds.toFixed(1)} s, child peak RSS ${Math.round(hwmKiB / 1024)} MiB`,
    );
  },
});

/** Serves `text` in-process with `handler`, the input arriving `step` bytes at a time. */
async function serveInProcess(
  text: string,
  handler: Parameters<typeof serveStdioHttp1>[0],
  step: number,
): Promise<{ all: Uint8Array; logs: string[] }> {
  const bytes = enc(text);
  let offset = 0;
  const input = {
    read(p: Uint8Array): Promise<number | null> {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(step, p.length, bytes.length - offset);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
  };
  const chunks: Uint8Array[] = [];
  const output = new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) });
  const logs: string[] = [];
  await serveStdioHttp1(handler, { input, output, log: (line) => logs.push(line) });
  return { all: concatChunks(chunks), logs };
}

Deno.test("stdio h1: a small declared body that fails or has another length becomes a 500, and the stream stays in sync", async () => {
  const failing = () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(enc("partial"));
        controller.error(new Error("disk gone"));
      },
    });
  let endlessPulls = 0;
  let endlessCancelled = false;
  const handler: Parameters<typeof serveStdioHttp1>[0] = async (request) => {
    await Promise.resolve();
    const path = new URL(request.url).pathname;
    const length = { "content-length": "100" };
    if (path === "/short") return new Response("only this", { headers: length });
    if (path === "/long") return new Response("x".repeat(150), { headers: length });
    if (path === "/fails") return new Response(failing(), { headers: length });
    if (path === "/endless") {
      return new Response(
        new ReadableStream<Uint8Array>({
          pull: (controller) => void (endlessPulls++, controller.enqueue(new Uint8Array(64))),
          cancel: () => void (endlessCancelled = true),
        }),
        { headers: length },
      );
    }
    return new Response("fine", { headers: { "content-length": "4" } });
  };
  const paths = ["/short", "/ok", "/long", "/ok", "/fails", "/ok", "/endless", "/ok"];
  const text = paths.map((p) => `GET ${p} HTTP/1.1\r\n\r\n`).join("");
  const { all, logs } = await serveInProcess(text, handler, 64 * 1024);
  const { list, used } = parseResponses(all, paths.map(() => false));
  assertEquals(used, all.length);
  assertEquals(list.map((r) => r.status), [500, 200, 500, 200, 500, 200, 500, 200]);
  assert(endlessCancelled && endlessPulls <= 4, `endless body pulled ${endlessPulls} times`);
  for (const response of list.filter((r) => r.status === 200)) {
    assertEquals(decoder.decode(response.body), "fine");
  }
  assertEquals(logs.length, 4, logs.join("\n"));
  assertMatch(logs[0], /of 9 bytes, not its Content-Length 100/);
  assertMatch(logs[1], /longer than its Content-Length 100/);
  assertMatch(logs[2], /failed before sending: .*disk gone/);
  assertMatch(logs[3], /longer than its Content-Length 100/);
});

Deno.test("stdio h1: body pieces kept by a handler are not overwritten by later reads", async () => {
  // Reads share one buffer front to back; a handler that keeps the pieces of its body (as a
  // provider's write queue may) must still see them unchanged after the next requests arrived.
  const kept: Uint8Array[][] = [];
  const handler: Parameters<typeof serveStdioHttp1>[0] = async (request) => {
    const pieces: Uint8Array[] = [];
    if (request.body) { for await (const piece of request.body) pieces.push(piece); }
    kept.push(pieces);
    return new Response(null, { status: 204 });
  };
  const bodies = Array.from(
    { length: 120 },
    (_, i) => String.fromCharCode(65 + (i % 26)).repeat(900 + i),
  );
  const text = bodies.map((b) => `POST /put HTTP/1.1\r\nContent-Length: ${b.length}\r\n\r\n${b}`)
    .join("");
  for (const step of [333, 64 * 1024]) {
    kept.length = 0;
    const { all } = await serveInProcess(text, handler, step);
    const { list } = parseResponses(all, bodies.map(() => false));
    assertEquals(list.map((r) => r.status), bodies.map(() => 204));
    assertEquals(kept.map((pieces) => decoder.decode(concatChunks(pieces))), bodies);
  }
});

Deno.test("stdio h1: header values keep their latin-1 bytes", async () => {
  const seen: string[] = [];
  const recording: Parameters<typeof serveStdioHttp1>[0] = async (request) => {
    await Promise.resolve();
    seen.push(request.headers.get("x-name") ?? "");
    return new Response(null, { status: 204 });
  };
  const head = new Uint8Array([...enc("GET /x HTTP/1.1\r\nX-Name: caf"), 0xe9, ...enc("\r\n\r\n")]);
  let given = false;
  const chunks: Uint8Array[] = [];
  await serveStdioHttp1(recording, {
    input: {
      read(p: Uint8Array) {
        if (given) return Promise.resolve(null);
        given = true;
        p.set(head);
        return Promise.resolve(head.length);
      },
    },
    output: new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) }),
    log: () => {},
  });
  assertEquals(seen, ["caf\u00e9"]);
});

Deno.test("stdio h1: header values lose only their spaces and tabs; repeated fields keep their order", async () => {
  const seen: Record<string, string | null>[] = [];
  const recording: Parameters<typeof serveStdioHttp1>[0] = async (request) => {
    await Promise.resolve();
    const get = (name: string) => request.headers.get(name);
    seen.push({
      padded: get("x-padded"),
      inner: get("x-inner"),
      nbsp: get("x-nbsp"),
      empty: get("x-empty"),
      repeated: get("x-repeated"),
      cased: get("x-cased"),
    });
    return new Response(null, { status: 204 });
  };
  const text =
    "GET /a HTTP/1.1\r\nX-Padded: \t value \t \r\nX-Inner:a  b\r\nX-Nbsp: \u00a0v\u00a0\r\n" +
    "X-Empty: \t \r\nX-Repeated: 1\r\nX-Cased: A\r\nx-cased: B\r\nX-Repeated: 2\r\nX-Repeated: 3\r\n\r\n" +
    "GET /b HTTP/1.1\r\nX-Repeated: only\r\n\r\n";
  const { all } = await serveInProcess(text, recording, 7);
  assertEquals(parseResponses(all, [false, false]).list.map((r) => r.status), [204, 204]);
  assertEquals(seen, [
    {
      padded: "value",
      inner: "a  b",
      // U+00A0 arrives as UTF-8 (C2 A0), read as latin-1; a trailing A0 byte is no OWS
      nbsp: "\u00c2\u00a0v\u00c2\u00a0",
      empty: "",
      repeated: "1, 2, 3",
      cased: "A, B",
      // (the Headers class combines fields of one name in the order they came)
    },
    { padded: null, inner: null, nbsp: null, empty: null, repeated: "only", cased: null },
  ]);
});

Deno.test("stdio h1: a head that arrives in one read is parsed as one that arrives in pieces", async () => {
  const seen: string[][] = [];
  const recording: Parameters<typeof serveStdioHttp1>[0] = async (request) => {
    await Promise.resolve();
    seen.push([request.method, new URL(request.url).pathname, ...request.headers].map(String));
    return new Response(null, { status: 204 });
  };
  const text = "\r\nGET /crlf HTTP/1.1\r\nX-A: \t1 \r\nX-B:2\r\n\r\n" +
    "GET /lf HTTP/1.1\nX-A: 1\nX-B: 2\r\n\n" +
    `HEAD /long HTTP/1.1\r\nX-Long: ${"v".repeat(60 * 1024)}\r\n\r\n` +
    "GET /bad HTTP/1.1\r\nNo colon here\r\n\r\n" +
    "GET /last HTTP/1.1\r\n\r\n";
  const statuses: number[][] = [];
  const views: string[][][] = [];
  for (const step of [64 * 1024, 7]) {
    seen.length = 0;
    const { all } = await serveInProcess(text, recording, step);
    statuses.push(
      parseResponses(all, [false, false, true, false, false]).list.map((r) => r.status),
    );
    views.push(structuredClone(seen));
  }
  assertEquals(statuses[0], [204, 204, 204, 400, 204]);
  assertEquals(statuses[0], statuses[1]);
  assertEquals(views[0], views[1]);
  assertEquals(views[0][0], ["GET", "/crlf", "x-a,1", "x-b,2"]);
  assertEquals(views[0][1], ["GET", "/lf", "x-a,1", "x-b,2"]);
});
