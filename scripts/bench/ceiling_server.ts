// The harness ceiling for small requests: the least a restic REST server can do, on Deno.serve,
// with objects kept in memory (no storage, no verification, no auth, no logs). The bench runs its
// small-object workloads (upload, HEAD, GET) against it with the same client, so that the table
// shows how far stowage is from what this machine and client can do at all.
//
//   deno run -A scripts/bench/ceiling_server.ts --listen 127.0.0.1:0
//
// Prints "start server on HOST:PORT" on stderr once listening, like stowage.

import { parseListenAddress } from "../../src/transport/listen.ts";

const OBJECT = /^\/[^/]+\/(data|keys|locks|snapshots|index)\/([0-9a-f]{64})$/;
const V2 = "application/vnd.x.restic.rest.v2";

/** The --listen value (HOST:PORT, parsed like stowage's own flag); exits 2 when it is bad. */
function listenAddress(argv: string[]): { hostname: string; port: number } {
  const index = argv.indexOf("--listen");
  try {
    const address = parseListenAddress(index >= 0 ? argv[index + 1] ?? "" : "127.0.0.1:0");
    if (address.kind === "tcp") return address;
  } catch {
    // reported below
  }
  console.error("usage: ceiling_server.ts --listen HOST:PORT");
  Deno.exit(2);
}

/** Reads a whole (small) request body. */
async function readAll(request: Request): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await request.arrayBuffer());
}

function main(): void {
  const { hostname, port } = listenAddress(Deno.args);
  const objects = new Map<string, Uint8Array<ArrayBuffer>>();
  const octets = { "Content-Type": "application/octet-stream" };
  const server = Deno.serve({
    hostname,
    port,
    onListen: (addr) => console.error(`start server on ${addr.hostname}:${addr.port}`),
  }, async (request) => {
    const path = new URL(request.url).pathname;
    const match = OBJECT.exec(path);
    if (match === null) {
      if (request.method === "POST" && path.endsWith("/")) return new Response(null);
      if (request.method === "GET" && path.endsWith("/")) {
        const prefix = path;
        const entries = [...objects].filter(([key]) => key.startsWith(prefix))
          .map(([key, bytes]) => ({ name: key.slice(prefix.length), size: bytes.byteLength }));
        return Response.json(entries, { headers: { "Content-Type": V2 } });
      }
      return new Response("Not Found\n", { status: 404 });
    }
    switch (request.method) {
      case "POST":
        objects.set(path, await readAll(request));
        return new Response(null);
      case "HEAD":
      case "GET": {
        const bytes = objects.get(path);
        if (bytes === undefined) return new Response(null, { status: 404 });
        const headers = { ...octets, "Content-Length": String(bytes.byteLength) };
        return new Response(request.method === "HEAD" ? null : bytes, { headers });
      }
      case "DELETE":
        objects.delete(path);
        return new Response(null);
      default:
        return new Response(null, { status: 405 });
    }
  });
  Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
}

if (import.meta.main) main();
