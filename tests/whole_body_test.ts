// Small request bodies taken in one buffer (RequestBody.readWhole, readWholeBody in
// src/http/held_body.ts): only unread Content-Length bodies within the limit, pieces joined in
// order, the web stream unusable afterwards, an early end of input rejected like a stream read;
// the HTTP/1.1 listeners offer it, and restic uploads and BorgStore stores through it keep exactly
// what was sent and refuse what does not match its hash.

import { createHandler, MemoryProvider } from "../mod.ts";
import { BORGSTORE_MEDIA_TYPE, createBorgstoreServerHandler } from "../src/protocol/borgstore.ts";
import { readWholeBody } from "../src/http/held_body.ts";
import type { Handler } from "../src/http/types.ts";
import { InputBuffer, RequestBody } from "../src/transport/h1_read.ts";
import { startTcpHttp1 } from "../src/transport/tcp_h1.ts";
import { NO_TIMEOUTS } from "../src/transport/timeouts.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { parseRawResponse, randomBytes, rawExchange, sha256Hex } from "./_server.ts";

const encoder = new TextEncoder();

/** An input that delivers `pieces` one read at a time, then ends. */
function inputOf(pieces: Uint8Array[]): InputBuffer {
  return new InputBuffer(ReadableStream.from(pieces));
}

/** Where restic's data object `id` of repository `r` is stored. */
function dataKey(id: string): string {
  return `r/data/${id.slice(0, 2)}/${id}`;
}

function bytesOf(text: string): Uint8Array {
  return encoder.encode(text);
}

Deno.test("readWhole joins the pieces of an unread body; the stream has nothing after", async () => {
  const body = new RequestBody(inputOf([bytesOf("abc"), bytesOf("defg"), bytesOf("hi")]), {
    kind: "length",
    length: 9,
  });
  const whole = body.readWhole(64);
  assert(whole !== null, "an unread body within the limit is offered");
  assertEquals(new TextDecoder().decode(await whole), "abcdefghi");
  assertEquals(body.readWhole(64), null, "taken once");
  await assertRejects(() => body.stream().getReader().read());
  assertEquals(await body.discard(), true, "the input is in sync after the body");
});

Deno.test("readWhole hands out a body that came in one read as that piece", async () => {
  const piece = bytesOf("0123456789");
  const body = new RequestBody(inputOf([piece]), { kind: "length", length: 10 });
  const whole = await body.readWhole(10)!;
  assertEquals(whole, piece);
  assertEquals(whole.buffer, piece.buffer, "no copy");
});

Deno.test("readWhole offers nothing for large, chunked or already pulled bodies", async () => {
  const large = new RequestBody(inputOf([bytesOf("abcdef")]), { kind: "length", length: 6 });
  assertEquals(large.readWhole(5), null);
  const { value } = await large.stream().getReader().read();
  assertEquals(new TextDecoder().decode(value), "abcdef", "the stream still has the body");

  const chunked = new RequestBody(inputOf([bytesOf("3\r\nabc\r\n0\r\n\r\n")]), {
    kind: "chunked",
  });
  assertEquals(chunked.readWhole(1024), null);

  const pulled = new RequestBody(inputOf([bytesOf("ab"), bytesOf("cd")]), {
    kind: "length",
    length: 4,
  });
  await pulled.stream().getReader().read();
  assertEquals(pulled.readWhole(1024), null, "a body partly read by the stream is not whole");
});

Deno.test("readWhole rejects when the input ends inside the body", async () => {
  const body = new RequestBody(inputOf([bytesOf("abc")]), { kind: "length", length: 8 });
  await assertRejects(() => body.readWhole(64)!);
  assert(body.broken, "the body is broken");
  assertEquals(await body.discard(), false, "the connection cannot go on");
});

Deno.test("the TCP listener offers small bodies whole and keeps the connection in sync", async () => {
  const seen: string[] = [];
  const handler: Handler = async (request) => {
    const whole = readWholeBody(request, 16);
    if (whole !== null) seen.push(`whole ${new TextDecoder().decode(await whole)}`);
    else seen.push(`stream ${await request.text()}`);
    return new Response("ok", { headers: { "content-length": "2" } });
  };
  const server = startTcpHttp1(handler, { hostname: "127.0.0.1", port: 0, timeouts: NO_TIMEOUTS });
  try {
    const port = Number(server.address.split(":").pop());
    const post = (body: string) =>
      `POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const raw = await rawExchange(
      port,
      post("small") + post("a body of more than sixteen bytes") + post("again") +
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    const text = new TextDecoder().decode(raw);
    assertEquals(text.split("HTTP/1.1 200").length - 1, 4, text);
    assertEquals(seen, [
      "whole small",
      "stream a body of more than sixteen bytes",
      "whole again",
      "stream ",
    ]);
  } finally {
    await server.shutdown(1000);
  }
});

/** Sends `head`, then `body` in pieces of `piece` bytes with pauses between; the answer's status. */
async function postInPieces(port: number, head: string, body: Uint8Array, piece: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(head));
  for (let at = 0; at < body.length; at += piece) {
    await new Promise((resolve) => setTimeout(resolve, 30));
    await conn.write(body.subarray(at, Math.min(at + piece, body.length)));
  }
  const answer = new Uint8Array(4096);
  let got = 0;
  while (true) {
    const n = await conn.read(answer.subarray(got));
    if (n === null) break;
    got += n;
  }
  conn.close();
  return parseRawResponse(answer.subarray(0, got)).status;
}

Deno.test("restic uploads taken whole store the bytes sent, in pieces too, and check the ID", async () => {
  const provider = new MemoryProvider();
  const server = startTcpHttp1(createHandler({ provider }), {
    hostname: "127.0.0.1",
    port: 0,
    timeouts: NO_TIMEOUTS,
  });
  try {
    const port = Number(server.address.split(":").pop());
    const created = parseRawResponse(
      await rawExchange(
        port,
        "POST /r/?create=true HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      ),
    );
    assertEquals(created.status, 200);

    // head and body in separate writes with pauses between: the body is joined from its pieces
    const data = randomBytes(20_000);
    const id = sha256Hex(data);
    const head = `POST /r/data/${id} HTTP/1.1\r\nHost: a\r\nContent-Length: ${data.length}\r\n` +
      `Connection: close\r\n\r\n`;
    assertEquals(await postInPieces(port, head, data, 7000), 200);
    const stored = await provider.readBytes!(dataKey(id));
    assertEquals(sha256Hex(stored), id, "the stored object is the body sent");

    // a body that does not hash to its ID is refused and leaves nothing
    const wrongId = sha256Hex("something else");
    const refused = parseRawResponse(
      await rawExchange(
        port,
        `POST /r/data/${wrongId} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n` +
          `Connection: close\r\n\r\nhello`,
      ),
    );
    assertEquals(refused.status, 400);
    assertEquals(await provider.stat(dataKey(wrongId)), null);

    // a body cut short by the client leaves nothing either
    const cutId = sha256Hex("0123456789");
    await rawExchange(
      port,
      `POST /r/data/${cutId} HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234`,
      { halfClose: true },
    );
    assertEquals(await provider.stat(dataKey(cutId)), null);
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("BorgStore stores taken whole keep the bytes sent and check the announced hash", async () => {
  const provider = new MemoryProvider({ rootExists: false });
  const handler = createBorgstoreServerHandler({
    store: { provider, permissions: null, quota: null },
    authenticate: () => Promise.resolve("anonymous"),
  });
  const server = startTcpHttp1(handler, { hostname: "127.0.0.1", port: 0, timeouts: NO_TIMEOUTS });
  const accept = `Accept: ${BORGSTORE_MEDIA_TYPE}\r\n`;
  try {
    const port = Number(server.address.split(":").pop());
    const created = await rawExchange(
      port,
      `POST /?cmd=create HTTP/1.1\r\nHost: a\r\n${accept}Connection: close\r\n\r\n`,
    );
    assertEquals(parseRawResponse(created).status, 200);

    const data = randomBytes(30_000);
    const head = (name: string, hash: string, length: number) =>
      `POST /${name} HTTP/1.1\r\nHost: a\r\n${accept}Content-Length: ${length}\r\n` +
      `X-Content-hash-sha256: ${hash}\r\nConnection: close\r\n\r\n`;
    assertEquals(
      await postInPieces(port, head("item", sha256Hex(data), data.length), data, 9000),
      200,
    );
    assertEquals(sha256Hex(await provider.readBytes!("item")), sha256Hex(data));

    const other = bytesOf("other bytes");
    assertEquals(
      await postInPieces(port, head("bad", sha256Hex("x"), other.length), other, 4),
      422,
    );
    assertEquals(await provider.stat("bad"), null, "a wrong hash stores nothing");

    await rawExchange(port, head("cut", sha256Hex(data), data.length) + "only a part", {
      halfClose: true,
    });
    assertEquals(await provider.stat("cut"), null, "a body cut short stores nothing");
  } finally {
    await server.shutdown(1000);
  }
});
