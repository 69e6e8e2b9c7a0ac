// Pooled read buffers (src/storage/read_buffers.ts): which sizes are pooled, that only lent
// buffers come back (never a provider's own bytes), once; and, end to end, that concurrent 64–256
// KiB range answers over the TCP listener (which returns their buffers after writing) and through
// the other consumers' path each carry exactly their own bytes.

import { createHash } from "node:crypto";
import { createHandler, FsProvider, MemoryProvider } from "../mod.ts";
import { heldBodyResponse, takeHeldBody } from "../src/http/held_body.ts";
import type { RequestInfo } from "../src/http/types.ts";
import { returnReadBuffer, takeReadBuffer } from "../src/storage/read_buffers.ts";
import { OutputBuffer, writeResponse } from "../src/transport/h1_write.ts";
import { startTcpHttp1 } from "../src/transport/tcp_h1.ts";
import { NO_TIMEOUTS } from "../src/transport/timeouts.ts";
import { assert, assertEquals } from "./_assert.ts";

Deno.test("read buffers: small reads allocate, 64–512 KiB reads are lent from size classes", () => {
  const small = takeReadBuffer(4096);
  assertEquals(small.byteLength, 4096);
  assertEquals(small.buffer.byteLength, 4096);
  const ranged = takeReadBuffer(200 * 1024);
  assertEquals(ranged.byteLength, 200 * 1024);
  assertEquals(ranged.buffer.byteLength, 256 * 1024);
  assertEquals(takeReadBuffer(256 * 1024 + 1).buffer.byteLength, 512 * 1024);
  assertEquals(takeReadBuffer(600 * 1024).buffer.byteLength, 600 * 1024);
});

Deno.test("read buffers: only lent buffers come back, once, and are lent again", () => {
  const first = takeReadBuffer(100 * 1024);
  returnReadBuffer(first.subarray(0, 10));
  returnReadBuffer(first); // a second return is ignored
  const again = takeReadBuffer(120 * 1024);
  assert(again.buffer === first.buffer, "the returned buffer is lent again");
  const other = takeReadBuffer(120 * 1024);
  assert(other.buffer !== first.buffer, "a buffer is lent to one reader at a time");

  const foreign = new Uint8Array(128 * 1024);
  returnReadBuffer(foreign);
  assert(takeReadBuffer(128 * 1024).buffer !== foreign.buffer, "foreign bytes are never pooled");
});

Deno.test("the HTTP/1.1 writer gives a held read buffer back only after its write finished", async () => {
  const bytes = takeReadBuffer(200 * 1024).fill(1);
  const response = heldBodyResponse(bytes, { headers: { "content-length": String(bytes.length) } });
  const sent: Uint8Array[] = [];
  // a socket that takes its time: it reads the bytes only when the write ends, as the kernel may
  const slowSink = {
    async write(chunk: Uint8Array) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      sent.push(chunk.slice());
    },
    close: () => Promise.resolve(),
  };
  const writing = writeResponse(new OutputBuffer(slowSink), response, false, {
    extra: [],
    unsized: "chunked",
    maxBuffered: 0,
    log: () => {},
  });
  // another read of the same size class while the write is still running
  await new Promise((resolve) => setTimeout(resolve, 10));
  const other = takeReadBuffer(200 * 1024).fill(2);
  assert(await writing);
  const body = sent[sent.length - 1];
  assertEquals(body.length, bytes.length);
  assert(body.every((byte) => byte === 1), "the body was overwritten by another read");
  assert(other.buffer !== bytes.buffer);
  assert(takeReadBuffer(200 * 1024).buffer === bytes.buffer, "given back after the write");
});

/** A 2 MiB restic data object through `handler`; returns its bytes and URL. */
async function storeObject(
  handler: ReturnType<typeof createHandler>,
  info: RequestInfo,
): Promise<{ object: Uint8Array; url: string }> {
  const base = "http://127.0.0.1:8000/repo/";
  assertEquals(
    (await handler(new Request(base + "?create=true", { method: "POST" }), info)).status,
    200,
  );
  const object = new Uint8Array(2 * 1024 * 1024);
  for (let i = 0; i < object.length; i += 65536) {
    crypto.getRandomValues(object.subarray(i, i + 65536));
  }
  const id = createHash("sha256").update(object).digest("hex");
  const put = await handler(
    new Request(base + "data/" + id, { method: "POST", body: object }),
    info,
  );
  assertEquals(put.status, 200);
  return { object, url: base + "data/" + id };
}

function ranges(count: number, objectLength: number): { start: number; length: number }[] {
  const out = [];
  for (let i = 0; i < count; i++) {
    const length = 65 * 1024 + ((i * 7919) % (190 * 1024));
    out.push({ start: (i * 104_729) % (objectLength - length), length });
  }
  return out;
}

Deno.test("concurrent 64–256 KiB ranges over the TCP listener each carry their own bytes", async () => {
  const dir = await Deno.makeTempDir();
  const handler = createHandler({ provider: new FsProvider(dir) });
  const server = startTcpHttp1(handler, {
    hostname: "127.0.0.1",
    port: 0,
    timeouts: NO_TIMEOUTS,
    log: () => {},
  });
  try {
    const { object, url } = await storeObject(handler, {
      remoteAddr: "127.0.0.1",
      transport: "tcp",
    });
    const path = new URL(url).pathname;
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        ranges(48, object.length).map(async ({ start, length }, i) => {
          const range = `bytes=${start + round}-${start + round + length - 1}`;
          const response = await fetch(`http://${server.address}${path}`, { headers: { range } });
          assertEquals(response.status, 206);
          const got = new Uint8Array(await response.arrayBuffer());
          const want = object.subarray(start + round, start + round + length);
          assert(
            got.length === want.length && got.every((byte, k) => byte === want[k]),
            `range ${i} of round ${round} (${range}) carries other bytes`,
          );
        }),
      );
    }
  } finally {
    await server.shutdown(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("64–256 KiB answers for other consumers are streams of their bytes; held ones too", async () => {
  for (const provider of [new MemoryProvider(), new FsProvider(await Deno.makeTempDir())]) {
    const handler = createHandler({ provider });
    const info: RequestInfo = { remoteAddr: "127.0.0.1", transport: "tcp" };
    const { object, url } = await storeObject(handler, info);
    const headers = { range: "bytes=1000-201799" };
    const plain = await handler(new Request(url, { headers }), info);
    assertEquals(plain.status, 206);
    assert(plain.body !== null, "a consumer without heldBodies gets the body inside the Response");
    assertEquals(new Uint8Array(await plain.arrayBuffer()), object.subarray(1000, 201800));
    const held = await handler(new Request(url, { headers }), { ...info, heldBodies: true });
    assertEquals(held.body, null);
    assertEquals(takeHeldBody(held), object.subarray(1000, 201800));
    if (provider instanceof FsProvider) await Deno.remove(provider.root, { recursive: true });
  }
});
