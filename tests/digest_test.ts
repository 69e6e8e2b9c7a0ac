// src/stream/digest.ts: digesting pass-through, whole-stream hashing, exact body length, draining.

import { createHash } from "node:crypto";
import { digestingStream, drainBody, hashStream } from "../src/stream/digest.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import {
  CHUNK_SIZES,
  chunkedStream,
  collect,
  patterned,
  sha256,
  SIZE_MATRIX,
} from "./_provider_contract.ts";

function cases(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const size of SIZE_MATRIX) {
    for (const chunk of CHUNK_SIZES) {
      if (chunk === 1 && size > 65537) continue;
      out.push([size, chunk]);
    }
  }
  return out;
}

Deno.test("digestingStream passes bytes unchanged and digests them (size matrix)", async () => {
  for (const [size, chunk] of cases()) {
    const data = patterned(size, size + chunk);
    const d = await digestingStream();
    const out = await collect(chunkedStream(data, chunk).pipeThrough(d.stream));
    assertEquals(out.byteLength, size, `size ${size}/${chunk}`);
    assertEquals(sha256(out), sha256(data), `passthrough ${size}/${chunk}`);
    assertEquals(d.hex(), sha256(data), `digest ${size}/${chunk}`);
    assertEquals(d.bytes(), size);
    assertEquals(d.hex(), sha256(data), "hex() is stable");
  }
});

Deno.test("digestingStream: chunks are passed through as the same bytes, in order", async () => {
  const d = await digestingStream();
  const chunks = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([4])];
  const out: Uint8Array[] = [];
  await ReadableStream.from(chunks).pipeThrough(d.stream).pipeTo(
    new WritableStream({ write: (c) => void out.push(c) }),
  );
  assertEquals(out.map((c) => [...c]), [[1, 2, 3], [], [4]]);
  assertEquals(d.bytes(), 4);
});

Deno.test("digestingStream: other algorithms and the empty stream", async () => {
  const data = patterned(100_000, 4);
  for (const algorithm of ["sha1", "sha512", "md5", "sha256"]) {
    const d = await digestingStream(algorithm);
    await collect(chunkedStream(data, 7000).pipeThrough(d.stream));
    assertEquals(d.hex(), createHash(algorithm).update(data).digest("hex"), algorithm);
  }
  const empty = await digestingStream();
  await collect(chunkedStream(new Uint8Array(0), 1).pipeThrough(empty.stream));
  assertEquals(
    empty.hex(),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assertEquals(empty.bytes(), 0);
});

Deno.test("digestingStream: bytes() counts while streaming; errors propagate", async () => {
  const d = await digestingStream();
  const writer = d.stream.writable.getWriter();
  const reader = d.stream.readable.getReader();
  const w = writer.write(new Uint8Array(10));
  await reader.read();
  await w;
  assertEquals(d.bytes(), 10);
  await writer.abort(new Error("broken"));
  await assertRejects(() => reader.read());
});

Deno.test("hashStream hashes whole streams (size matrix)", async () => {
  for (const [size, chunk] of cases()) {
    const data = patterned(size, size * 3 + chunk);
    const result = await hashStream(chunkedStream(data, chunk));
    assertEquals(result, { hex: sha256(data), bytes: size }, `${size}/${chunk}`);
  }
  const data = patterned(5000);
  assertEquals(
    (await hashStream(chunkedStream(data, 100), "sha512")).hex,
    createHash("sha512").update(data).digest("hex"),
  );
  const failing = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array(3));
      c.error(new Error("boom"));
    },
  });
  await assertRejects(() => hashStream(failing), (e) => (e as Error).message === "boom");
});

Deno.test("drainBody consumes a body, ignores missing, used and broken bodies", async () => {
  let pulled = 0;
  const data = patterned(3_000_000, 5);
  const body = chunkedStream(data, 65536).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        pulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }),
  );
  const request = new Request("http://x/", { method: "POST", body });
  await drainBody(request);
  assertEquals(pulled, data.byteLength);
  assert(request.bodyUsed, "body consumed");
  await drainBody(request); // already used: no-op

  await drainBody(new Request("http://x/"));

  const used = new Request("http://x/", { method: "POST", body: "abc" });
  assertEquals(await used.text(), "abc");
  await drainBody(used);

  const broken = new Request("http://x/", {
    method: "POST",
    body: new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(10));
        c.error(new Error("connection reset"));
      },
    }),
  });
  await drainBody(broken); // does not throw
});
