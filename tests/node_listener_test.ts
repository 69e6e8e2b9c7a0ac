// Both HTTP/1.1 listeners for TCP answering web Responses: the default one (tcp_h1, what
// startListener runs) and the node:http one (TLS and socket activation use it). Bodies with a small
// declared length (sent in one piece), streamed bodies, and bodies that fail before they are
// complete: tcp_h1 answers those 500 and keeps the connection; node:http has sent its head by then
// and cuts the connection.

import net from "node:net";
import { startListener } from "../src/transport/listen.ts";
import { createNodeHttpListener } from "../src/transport/node_http.ts";
import { NO_TIMEOUTS } from "../src/transport/timeouts.ts";
import type { Handler } from "../src/http/types.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { concatChunks } from "./_server.ts";

const SMALL = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);

function respond(request: Request): Response {
  const path = new URL(request.url).pathname;
  if (path === "/small") {
    return new Response(SMALL, { headers: { "content-length": String(SMALL.byteLength) } });
  }
  if (path === "/empty") return new Response("", { headers: { "content-length": "0" } });
  if (path === "/streamed") {
    const chunk = new Uint8Array(100_000).fill(1);
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 3) return controller.close();
          sent++;
          controller.enqueue(chunk);
        },
      }),
      { headers: { "content-length": "300000" } },
    );
  }
  if (path === "/endless") return endlessBody();
  // a small declared body whose stream fails halfway
  let pulls = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulls++ > 0) return controller.error(new Error("storage failed"));
        controller.enqueue(new Uint8Array(40));
      },
    }),
    { headers: { "content-length": "100" } },
  );
}

/** What the endless body was asked for: the listener must stop reading it and cancel it. */
const endless = { pulls: 0, cancelled: false };

/** Declares 100 bytes and never ends (a handler whose length is wrong). */
function endlessBody(): Response {
  return new Response(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        endless.pulls++;
        controller.enqueue(new Uint8Array(64));
      },
      cancel() {
        endless.cancelled = true;
      },
    }),
    { headers: { "content-length": "100" } },
  );
}

const handler: Handler = (request) => Promise.resolve(respond(request));

/** Sends raw requests on one connection and returns everything until the peer closes. */
function exchange(port: number, requests: string): Promise<{ bytes: Uint8Array; reset: boolean }> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let reset = false;
    const socket = net.connect(port, "127.0.0.1", () => socket.write(requests));
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.on("error", () => reset = true);
    socket.on("close", () => resolve({ bytes: concatChunks(chunks), reset }));
  });
}

interface Listening {
  port: number;
  shutdown(graceMs: number): Promise<void>;
}

async function defaultListener(log: (line: string) => void): Promise<Listening> {
  const server = await startListener(handler, { address: "127.0.0.1:0", log });
  return { port: Number(server.address.split(":").pop()), shutdown: server.shutdown };
}

async function nodeListener(log: (line: string) => void): Promise<Listening> {
  const listener = createNodeHttpListener(handler, {
    transport: "tcp",
    timeouts: NO_TIMEOUTS,
    log,
  });
  const bound = await listener.listen({ hostname: "127.0.0.1", port: 0 });
  return { port: (bound as { port: number }).port, shutdown: listener.shutdown };
}

/** Body bytes after the first head of a raw answer (latin1 text), or -1 without a head. */
function bodyLength(bytes: Uint8Array, text: string): number {
  const head = text.indexOf("\r\n\r\n");
  return head < 0 ? -1 : bytes.byteLength - head - 4;
}

for (
  const [name, start, failureKeepsConnection] of [
    ["default listener (tcp_h1)", defaultListener, true],
    ["node:http listener", nodeListener, false],
  ] as const
) {
  Deno.test(`${name}: small, empty and streamed bodies arrive whole; a failing small body never looks complete`, async () => {
    endless.pulls = 0;
    endless.cancelled = false;
    const logged: string[] = [];
    const server = await start((line) => logged.push(line));
    const port = server.port;
    try {
      const small = await fetch(`http://127.0.0.1:${port}/small`);
      assertEquals(small.headers.get("content-length"), "5000");
      assertEquals(new Uint8Array(await small.arrayBuffer()), SMALL);
      const streamed = await fetch(`http://127.0.0.1:${port}/streamed`);
      assertEquals((await streamed.arrayBuffer()).byteLength, 300_000);

      // keep-alive: an empty body, then a small one, on one connection
      const { bytes } = await exchange(
        port,
        "GET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      const text = new TextDecoder("latin1").decode(bytes);
      assertEquals(text.match(/HTTP\/1\.1 200/g)?.length, 2, text.slice(0, 300));
      assert(/content-length: 0\r\n/i.test(text), "the empty answer has its length");
      assertEquals(bytes.byteLength - text.lastIndexOf("\r\n\r\n") - 4, 5000);

      // the failing body: no complete answer claims 100 bytes
      const failed = await exchange(
        port,
        "GET /failing HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      const answer = new TextDecoder("latin1").decode(failed.bytes);
      assert(!/content-length: 100\r\n/i.test(answer), "never an answer of 100 bytes");
      assert(logged.some((line) => line.includes("response body failed")), logged.join("\n"));
      if (failureKeepsConnection) {
        // a 500 instead, and the next request on the connection is answered
        assertMatch(answer, /^HTTP\/1\.1 500 /);
        assertEquals(failed.bytes.byteLength - answer.lastIndexOf("\r\n\r\n") - 4, 5000);
        assertEquals(answer.match(/HTTP\/1\.1 200/g)?.length, 1, answer);
      } else {
        assert(bodyLength(failed.bytes, answer) < 100, "the connection is cut");
      }

      // a small declared body that never ends: collected up to its length, cancelled
      const endlessAnswer = await exchange(
        port,
        "GET /endless HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      const endlessText = new TextDecoder("latin1").decode(endlessAnswer.bytes);
      assert(!/content-length: 100\r\n/i.test(endlessText), endlessText);
      assert(endless.cancelled, "the endless body was cancelled");
      assert(endless.pulls <= 4, `pulled ${endless.pulls} times`);

      // and the listener goes on serving
      assertEquals(
        (await (await fetch(`http://127.0.0.1:${port}/small`)).arrayBuffer()).byteLength,
        5000,
      );
    } finally {
      await server.shutdown(1000);
    }
  });
}
