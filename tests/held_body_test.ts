// Bodies held beside their Response (src/http/held_body.ts): handed over once, put into the
// Response for every consumer that reads `response.body` (embedding, Deno.serve, node:http,
// HTTP/2), written with the head by stowage's own HTTP/1.1 listener, where a held body that
// contradicts its Content-Length becomes a 500 instead of a mis-framed answer.

import { createHash } from "node:crypto";
import { createHandler, MemoryProvider } from "../mod.ts";
import {
  bodyResponse,
  forTransport,
  heldBodyResponse,
  takeHeldBody,
  withHeldBody,
} from "../src/http/held_body.ts";
import type { Handler, RequestInfo } from "../src/http/types.ts";
import { startTcpHttp1 } from "../src/transport/tcp_h1.ts";
import { NO_TIMEOUTS } from "../src/transport/timeouts.ts";
import { assert, assertEquals } from "./_assert.ts";

const bytes = new TextEncoder().encode("held body bytes");

Deno.test("a held body is handed over once, beside a Response without a body", () => {
  const response = heldBodyResponse(bytes, { status: 206, headers: { "x-a": "1" } });
  assertEquals(response.body, null);
  assertEquals(response.status, 206);
  assertEquals(takeHeldBody(response), bytes);
  assertEquals(takeHeldBody(response), undefined);
  assertEquals(takeHeldBody(new Response("plain")), undefined);
});

Deno.test("withHeldBody puts the bytes into the Response, status and headers kept", async () => {
  const response = withHeldBody(
    heldBodyResponse(bytes, { status: 206, statusText: "Partial", headers: { "x-a": "1" } }),
  );
  assertEquals(response.status, 206);
  assertEquals(response.statusText, "Partial");
  assertEquals(response.headers.get("x-a"), "1");
  assertEquals(new Uint8Array(await response.arrayBuffer()), bytes);
  const plain = new Response("plain");
  assert(withHeldBody(plain) === plain, "a Response without a held body is passed on as is");
});

Deno.test("forTransport keeps held bodies only for a transport that writes them", async () => {
  const kept = forTransport(heldBodyResponse(bytes, {}), { heldBodies: true });
  assertEquals(kept.body, null);
  assertEquals(takeHeldBody(kept), bytes);
  const moved = forTransport(heldBodyResponse(bytes, {}), {});
  assertEquals(await moved.text(), "held body bytes");
  const streamed = bodyResponse(new Response("streamed").body!, {});
  assertEquals(await forTransport(streamed, { heldBodies: true }).text(), "streamed");
});

Deno.test("the handler holds small object reads for HTTP/1.1 and hands full Responses to others", async () => {
  const handler = createHandler({ provider: new MemoryProvider() });
  const info: RequestInfo = { remoteAddr: "127.0.0.1", transport: "tcp" };
  const base = "http://127.0.0.1:8000/repo/";
  assertEquals(
    (await handler(new Request(base + "?create=true", { method: "POST" }), info)).status,
    200,
  );
  const object = crypto.getRandomValues(new Uint8Array(4096));
  const id = createHash("sha256").update(object).digest("hex");
  const put = await handler(
    new Request(base + "data/" + id, { method: "POST", body: object }),
    info,
  );
  assertEquals(put.status, 200);

  const plain = await handler(new Request(base + "data/" + id), info);
  assertEquals(new Uint8Array(await plain.arrayBuffer()), object);
  const ranged = await handler(
    new Request(base + "data/" + id, { headers: { range: "bytes=100-199" } }),
    info,
  );
  assertEquals(ranged.status, 206);
  assertEquals(new Uint8Array(await ranged.arrayBuffer()), object.subarray(100, 200));

  const held = await handler(new Request(base + "data/" + id), { ...info, heldBodies: true });
  assertEquals(held.body, null);
  assertEquals(held.headers.get("content-length"), "4096");
  assertEquals(takeHeldBody(held), object);
});

Deno.test("the TCP listener writes held bodies; one that contradicts its length is a 500", async () => {
  const logged: string[] = [];
  const seen: (boolean | undefined)[] = [];
  const handler: Handler = (request, info) => {
    seen.push(info.heldBodies);
    const length = new URL(request.url).pathname === "/wrong" ? "99" : String(bytes.length);
    return Promise.resolve(heldBodyResponse(bytes, { headers: { "content-length": length } }));
  };
  const server = startTcpHttp1(handler, {
    hostname: "127.0.0.1",
    port: 0,
    timeouts: NO_TIMEOUTS,
    log: (line) => logged.push(line),
  });
  try {
    const url = `http://${server.address}`;
    const good = await fetch(`${url}/good`);
    assertEquals(good.headers.get("content-length"), String(bytes.length));
    assertEquals(await good.text(), "held body bytes");
    const wrong = await fetch(`${url}/wrong`);
    assertEquals(wrong.status, 500);
    await wrong.body?.cancel();
    const again = await fetch(`${url}/good`);
    assertEquals(await again.text(), "held body bytes", "the connection stays usable");
    assertEquals(seen, [true, true, true]);
    assert(logged.some((line) => line.includes("not its Content-Length 99")), logged.join("\n"));
  } finally {
    await server.shutdown(1000);
  }
});
