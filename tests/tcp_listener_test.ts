// The plain-TCP HTTP/1.1 listener (tcp_h1) over raw sockets: keep-alive rules (HTTP/1.1,
// Connection: close, HTTP/1.0), chunked and close-delimited answers for bodies without a length,
// the request URL from the Host header, the peer address, Date, 100-continue, unframeable input,
// failing handlers, the idle rule for answers the client does not read and for slow handlers, and
// graceful shutdown (idle connections ended, running requests finished, the rest cut and aborted).

import net from "node:net";
import type { Handler } from "../src/http/types.ts";
import { startTcpHttp1, type TcpHttp1Server } from "../src/transport/tcp_h1.ts";
import { type ConnectionTimeouts, NO_TIMEOUTS } from "../src/transport/timeouts.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { concatChunks } from "./_server.ts";

const aborted: string[] = [];
const releaseSlow: (() => void)[] = [];

const handler: Handler = async (request, info) => {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/echo": {
      const body = request.body === null ? "" : await request.text();
      const text = `${request.method} ${request.url} ${info.remoteAddr} ${info.transport} ${body}`;
      return new Response(text, { headers: { "content-length": String(text.length) } });
    }
    case "/unsized":
      return new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (const piece of ["alpha,", "beta,", "gamma"]) {
              controller.enqueue(new TextEncoder().encode(piece));
            }
            controller.close();
          },
        }),
      );
    case "/throws":
      throw new Error("handler broke");
    case "/huge": {
      // 64 MiB, produced only as fast as the client reads it
      const chunk = new Uint8Array(1024 * 1024);
      let sent = 0;
      return new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent++ === 64) controller.close();
            else controller.enqueue(chunk);
          },
        }),
        { headers: { "content-length": String(64 * chunk.length) } },
      );
    }
    case "/slow": {
      // answers when the test says so; records an abort
      const name = url.searchParams.get("name") ?? "";
      info.signal!.addEventListener("abort", () => aborted.push(name));
      await new Promise<void>((resolve) => releaseSlow.push(resolve));
      return new Response("done", { headers: { "content-length": "4" } });
    }
    case "/think":
      await new Promise((resolve) => setTimeout(resolve, Number(url.searchParams.get("ms"))));
      return new Response("thought", { headers: { "content-length": "7" } });
    default:
      return new Response("", { status: 404, headers: { "content-length": "0" } });
  }
};

async function withListener(
  timeouts: ConnectionTimeouts,
  fn: (server: TcpHttp1Server, port: number, logged: string[]) => Promise<void>,
): Promise<void> {
  const logged: string[] = [];
  const server = startTcpHttp1(handler, {
    hostname: "127.0.0.1",
    port: 0,
    timeouts,
    log: (line) => logged.push(line),
  });
  try {
    await fn(server, Number(server.address.split(":").pop()), logged);
  } finally {
    releaseSlow.splice(0).forEach((release) => release());
    await server.shutdown(1000);
  }
}

interface Session {
  /** Everything received so far, as latin1 text. */
  text(): string;
  /** Resolves once the received text matches `pattern` (or the peer closed, or 5 s passed). */
  until(pattern: RegExp): Promise<string>;
  /** Resolves with the time until the server closed the connection, or null after `ms`. */
  closed(ms: number): Promise<number | null>;
  write(text: string): void;
  /** Starts reading (after `read: false`). */
  resume(): void;
  destroy(): void;
}

function connect(port: number, options: { read?: boolean } = {}): Promise<Session> {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Uint8Array[] = [];
    let closedAt: number | null = null;
    const waiters: (() => void)[] = [];
    const socket = net.connect(port, "127.0.0.1", () => resolve(session));
    if (options.read === false) socket.pause();
    socket.on("data", (chunk: Uint8Array) => {
      chunks.push(chunk);
      waiters.splice(0).forEach((wake) => wake());
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      closedAt = Date.now() - started;
      waiters.splice(0).forEach((wake) => wake());
    });
    const text = () => new TextDecoder("latin1").decode(concatChunks(chunks));
    const session: Session = {
      text,
      async until(pattern) {
        const deadline = Date.now() + 5000;
        while (!pattern.test(text()) && closedAt === null && Date.now() < deadline) {
          await new Promise<void>((wake) => {
            waiters.push(wake);
            setTimeout(wake, 100);
          });
        }
        return text();
      },
      async closed(ms) {
        const deadline = Date.now() + ms;
        while (closedAt === null && Date.now() < deadline) {
          await new Promise<void>((wake) => {
            waiters.push(wake);
            setTimeout(wake, 50);
          });
        }
        return closedAt;
      },
      write: (data) => socket.write(data),
      resume: () => socket.resume(),
      destroy: () => socket.destroy(),
    };
  });
}

Deno.test("tcp listener: HTTP/1.1 keeps the connection, Connection: close and HTTP/1.0 end it", async () => {
  await withListener(NO_TIMEOUTS, async (_server, port) => {
    const kept = await connect(port);
    kept.write("GET /echo HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: b\r\n\r\n");
    const two = await kept.until(/http:\/\/b\/echo/);
    assertEquals(two.match(/HTTP\/1\.1 200 OK/g)?.length, 2, two);
    assert(!/connection:/i.test(two), two);
    assertEquals(await kept.closed(300), null);
    kept.destroy();

    const close = await connect(port);
    close.write("GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert((await close.closed(3000)) !== null, "closed after Connection: close");
    assertMatch(close.text(), /\r\nConnection: close\r\n/);

    const old = await connect(port);
    old.write("GET /echo HTTP/1.0\r\n\r\n");
    assert((await old.closed(3000)) !== null, "HTTP/1.0 closes by default");
    assertMatch(old.text(), /^HTTP\/1\.1 200 OK\r\n[^]*Connection: close\r\n/);

    const oldKept = await connect(port);
    oldKept.write("GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    await oldKept.until(/ tcp $/);
    assertMatch(oldKept.text(), /\r\nConnection: keep-alive\r\n/);
    oldKept.write("GET /echo HTTP/1.0\r\n\r\n");
    assert((await oldKept.closed(3000)) !== null);
    assertEquals(oldKept.text().match(/HTTP\/1\.1 200 OK/g)?.length, 2);
  });
});

Deno.test("tcp listener: a body without a length goes chunked (HTTP/1.1) or until close (HTTP/1.0)", async () => {
  await withListener(NO_TIMEOUTS, async (_server, port) => {
    const response = await fetch(`http://127.0.0.1:${port}/unsized`);
    assertEquals(response.headers.get("transfer-encoding"), "chunked");
    assertEquals(await response.text(), "alpha,beta,gamma");

    const raw = await connect(port);
    raw.write("GET /unsized HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    const text = await raw.until(/ tcp $/);
    assertMatch(text, /\r\n\r\n6\r\nalpha,\r\n5\r\nbeta,\r\n5\r\ngamma\r\n0\r\n\r\nHTTP\/1\.1 200/);
    raw.destroy();

    const old = await connect(port);
    old.write("GET /unsized HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert((await old.closed(3000)) !== null, "a close-delimited body ends the connection");
    const oldText = old.text();
    assert(!/transfer-encoding|content-length/i.test(oldText), oldText);
    assert(oldText.endsWith("\r\n\r\nalpha,beta,gamma"), oldText);
  });
});

Deno.test("tcp listener: URL from a valid Host (else the listen address), peer address, Date", async () => {
  await withListener(NO_TIMEOUTS, async (server, port) => {
    const session = await connect(port);
    session.write(
      "GET /echo?a=1 HTTP/1.1\r\nHost: example.org:99\r\n\r\n" +
        "GET /echo HTTP/1.1\r\nHost: bad host/x\r\n\r\n" +
        "GET http://other.example/echo?b HTTP/1.1\r\n\r\n" +
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
        "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    const text = await session.until(/abc$/);
    assert(text.includes("GET http://example.org:99/echo?a=1 127.0.0.1 tcp "), text);
    assert(text.includes(`GET http://${server.address}/echo 127.0.0.1 tcp `), text);
    assert(text.includes(`GET http://${server.address}/echo?b 127.0.0.1 tcp `), text);
    assert(text.includes("POST http://h/echo 127.0.0.1 tcp hello"), text);
    assert(text.includes("POST http://h/echo 127.0.0.1 tcp abc"), text);
    const dates = [...text.matchAll(/\r\nDate: ([^\r]+)\r\n/g)].map((m) => m[1]);
    assertEquals(dates.length, 5);
    assert(Math.abs(Date.parse(dates[0]) - Date.now()) < 60_000, dates[0]);
    session.destroy();
  });
});

Deno.test("tcp listener: 100-continue, refusals, unframeable input and failing handlers", async () => {
  await withListener(NO_TIMEOUTS, async (_server, port, logged) => {
    const expecting = await connect(port);
    expecting.write(
      "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    );
    assertMatch(await expecting.until(/100 Continue\r\n\r\n/), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    expecting.write("ok");
    assertMatch(await expecting.until(/tcp ok$/), /HTTP\/1\.1 200 OK/);
    expecting.destroy();

    // a refused head is answered, then the connection ends (what follows is not served)
    const refused = await connect(port);
    refused.write(
      `GET /echo HTTP/1.1\r\nHost: h\r\nX-Long: ${"a".repeat(70_000)}\r\n\r\n` +
        "GET /echo HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert((await refused.closed(3000)) !== null, "closed after a refused head");
    assertMatch(refused.text(), /^HTTP\/1\.1 431 [^]*Connection: close\r\n/);
    assert(!refused.text().includes(" tcp "), refused.text());

    // input that cannot be framed: 400 with Connection: close, then the connection ends
    const garbage = await connect(port);
    garbage.write("\x16\x03\x01 hello there\r\n\r\n");
    assert((await garbage.closed(3000)) !== null);
    assertMatch(garbage.text(), /^HTTP\/1\.1 400 Bad Request\r\n[^]*Connection: close\r\n/);
    const conflicting = await connect(port);
    conflicting.write(
      "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert((await conflicting.closed(3000)) !== null);
    assertMatch(conflicting.text(), /^HTTP\/1\.1 400 /);

    // a handler that throws: 500, logged, and the connection goes on
    const failing = await connect(port);
    failing.write("GET /throws HTTP/1.1\r\nHost: h\r\n\r\nGET /echo HTTP/1.1\r\nHost: h\r\n\r\n");
    assertMatch(await failing.until(/ tcp $/), /^HTTP\/1\.1 500 [^]*HTTP\/1\.1 200 OK/);
    assert(logged.some((line) => line.includes("handler broke")), logged.join("\n"));
    assert(!failing.text().includes("handler broke"), "no error details to the client");
    failing.destroy();
  });
});

Deno.test("tcp listener: idle rule: an answer the client does not read is cut, a slow handler is not", async () => {
  await withListener({ headerMs: 5000, idleMs: 1000 }, async (_server, port) => {
    const stalled = await connect(port, { read: false });
    stalled.write("GET /huge HTTP/1.1\r\nHost: h\r\n\r\n");
    const thinking = await connect(port);
    thinking.write("GET /think?ms=2500 HTTP/1.1\r\nHost: h\r\n\r\n");
    assertMatch(await thinking.until(/thought$/), /^HTTP\/1\.1 200 OK/);
    // the stalled reader was cut meanwhile: reading now gets what was in flight, then the end
    stalled.resume();
    assert((await stalled.closed(3000)) !== null, "the stalled reader's connection was closed");
    const received = stalled.text().length;
    assert(received < 64 * 1024 * 1024, `received ${received} bytes`);
    // idle between requests from here on: closed after about a second
    const idleMs = await thinking.closed(4000);
    assert(idleMs !== null, "idle keep-alive connection closed");
  });
});

Deno.test("tcp listener: graceful shutdown ends idle connections, finishes running requests, aborts the rest", async () => {
  aborted.length = 0;
  const server = startTcpHttp1(handler, {
    hostname: "127.0.0.1",
    port: 0,
    timeouts: { headerMs: 60_000, idleMs: 600_000 },
    log: () => {},
  });
  const port = Number(server.address.split(":").pop());
  const idle = await connect(port);
  idle.write("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n");
  await idle.until(/ tcp $/);
  const running = await connect(port);
  running.write("GET /slow?name=finishes HTTP/1.1\r\nHost: h\r\n\r\n");
  const stuck = await connect(port);
  stuck.write("GET /slow?name=stuck HTTP/1.1\r\nHost: h\r\n\r\n");
  while (releaseSlow.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));

  const stopping = server.shutdown(1500);
  assert((await idle.closed(1000)) !== null, "the idle connection is ended at once");
  const refused = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", () => resolve(true));
  });
  assert(refused, "no new connections during shutdown");
  releaseSlow[0]();
  const finished = await running.until(/done$/);
  assertMatch(finished, /^HTTP\/1\.1 200 OK\r\n[^]*Connection: close\r\n[^]*done$/);
  assert((await running.closed(1000)) !== null, "closed after its last answer");
  await stopping;
  assert((await stuck.closed(1000)) !== null, "cut at the end of the grace period");
  assertEquals(aborted, ["stuck"]);
  await server.finished;
  releaseSlow.splice(0).forEach((release) => release());
});

Deno.test("tcp listener: a taken port is a clear error", () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    let message = "";
    try {
      startTcpHttp1(handler, { hostname: "127.0.0.1", port, timeouts: NO_TIMEOUTS });
    } catch (error) {
      message = (error as Error).message;
    }
    assertEquals(message, `listen tcp 127.0.0.1:${port}: address already in use`);
  } finally {
    taken.close();
  }
});
