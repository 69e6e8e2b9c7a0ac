// The library API (mod.ts): createHandler called in-process with web Requests (restic and
// borgstore cycles, hash checks, every option), the custom provider example run as a child and
// driven with fetch, and the real restic client against Deno.serve(createHandler(...)).

import bcrypt from "bcryptjs";
import {
  createHandler,
  FsProvider,
  MemoryProvider,
  type Provider,
  StowageError,
  type StowageHandler,
} from "../mod.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { randomBytes, sha256Hex, treeSnapshot } from "./_server.ts";
import { resticOk } from "./_restic.ts";

const ORIGIN = "http://stowage.test";
const BORG = { accept: "application/vnd.x.borgstore.rest.v1" };
const RESTIC_V2 = { accept: "application/vnd.x.restic.rest.v2" };
const EXAMPLE = new URL("../examples/custom_provider.ts", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/library_server.ts", import.meta.url).pathname;

function call(
  handler: StowageHandler,
  method: string,
  path: string,
  init: { body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<Response> {
  return handler(new Request(ORIGIN + path, { method, ...init }));
}

async function status(response: Response): Promise<number> {
  await response.body?.cancel();
  return response.status;
}

function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${btoa(`${user}:${password}`)}` };
}

function dataKey(repo: string, id: string): string {
  return `${repo}/data/${id.slice(0, 2)}/${id}`;
}

Deno.test("library: restic create, upload, list, get, delete in-process", async () => {
  const provider = new MemoryProvider();
  const handler = createHandler({ provider, log: () => {} });
  await handler.ready;
  assertEquals(await status(await call(handler, "POST", "/repo/?create=true")), 200);
  assertEquals(await status(await call(handler, "POST", "/repo/config", { body: "cfg" })), 200);
  assertEquals(await (await call(handler, "GET", "/repo/config")).text(), "cfg");

  const blob = randomBytes(10_000);
  const id = sha256Hex(blob);
  assertEquals(await status(await call(handler, "POST", `/repo/data/${id}`, { body: blob })), 200);
  assertEquals((await provider.stat(dataKey("repo", id)))?.size, 10_000, "rest-server layout");

  const listing = await call(handler, "GET", "/repo/data/", { headers: RESTIC_V2 });
  assertEquals(await listing.json(), [{ name: id, size: 10_000 }]);
  const head = await call(handler, "HEAD", `/repo/data/${id}`);
  assertEquals(head.headers.get("content-length"), "10000");
  const got = new Uint8Array(await (await call(handler, "GET", `/repo/data/${id}`)).arrayBuffer());
  assertEquals(sha256Hex(got), id);

  assertEquals(await status(await call(handler, "DELETE", `/repo/data/${id}`)), 200);
  assertEquals(await status(await call(handler, "GET", `/repo/data/${id}`)), 404);
  assertEquals(await provider.stat(dataKey("repo", id)), null);
  assertEquals(await status(await call(handler, "GET", "/health")), 200);
});

Deno.test("library: a restic upload with a wrong hash is refused and leaves nothing", async () => {
  const provider = new MemoryProvider();
  const handler = createHandler({ provider, log: () => {} });
  assertEquals(await status(await call(handler, "POST", "/r/?create=true")), 200);
  const claimed = sha256Hex("what the client announces");
  const upload = await call(handler, "POST", `/r/keys/${claimed}`, { body: "something else" });
  assertEquals(await status(upload), 400);
  assertEquals(await provider.stat(`r/keys/${claimed}`), null);
  assertEquals(await status(await call(handler, "GET", `/r/keys/${claimed}`)), 404);
});

Deno.test("library: borgstore create, store, load, list and a refused hash", async () => {
  const provider = new MemoryProvider();
  const handler = createHandler({ provider, log: () => {} });
  const create = await call(handler, "POST", "/store/?cmd=create", { headers: BORG });
  assertEquals(await status(create), 200);
  const stored = await call(handler, "POST", "/store/config/readme", {
    body: "hello",
    headers: { ...BORG, "x-content-hash-sha256": sha256Hex("hello") },
  });
  assertEquals(await status(stored), 200);
  assertEquals(
    await (await call(handler, "GET", "/store/config/readme", { headers: BORG })).text(),
    "hello",
  );
  const list = await (await call(handler, "GET", "/store/config/", { headers: BORG })).json();
  assertEquals(list.map((e: { name: string }) => e.name), ["readme"]);
  assertEquals((await provider.stat("store/config/readme"))?.size, 5, "store below its prefix");

  const refused = await call(handler, "POST", "/store/config/other", {
    body: "tampered",
    headers: { ...BORG, "x-content-hash-sha256": sha256Hex("original") },
  });
  assertEquals(await status(refused), 422);
  assertEquals(await provider.stat("store/config/other"), null);
  // A borg store is not a restic repository.
  assertEquals(await status(await call(handler, "GET", "/store/config")), 403);
});

Deno.test("library: borg stores work over an FsProvider through the same handler", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-library-test-" });
  try {
    const handler = createHandler({ provider: new FsProvider(dir), log: () => {} });
    assertEquals(
      await status(await call(handler, "POST", "/s/?cmd=create", { headers: BORG })),
      200,
    );
    assertEquals(
      await status(await call(handler, "POST", "/s/data/x", { body: "abc", headers: BORG })),
      200,
    );
    assertEquals(await Deno.readTextFile(`${dir}/s/data/x`), "abc");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("library: custom authenticate, append-only and private repositories", async () => {
  const provider = new MemoryProvider();
  const handler = createHandler({
    provider,
    auth: {
      authenticate: (request) => Promise.resolve(request.headers.get("x-user")),
    },
    appendOnly: true,
    privateRepos: true,
    log: () => {},
  });
  assertEquals(await status(await call(handler, "POST", "/alice/r/?create=true")), 401);
  const alice = { "x-user": "alice" };
  assertEquals(
    await status(await call(handler, "POST", "/alice/r/?create=true", { headers: alice })),
    200,
  );
  assertEquals(
    await status(await call(handler, "POST", "/bob/r/?create=true", { headers: alice })),
    401,
  );
  const id = sha256Hex("snapshot");
  const path = `/alice/r/snapshots/${id}`;
  assertEquals(
    await status(await call(handler, "POST", path, { body: "snapshot", headers: alice })),
    200,
  );
  assertEquals(await status(await call(handler, "DELETE", path, { headers: alice })), 403);
  const lock = `/alice/r/locks/${sha256Hex("lock")}`;
  assertEquals(
    await status(await call(handler, "POST", lock, { body: "lock", headers: alice })),
    200,
  );
  assertEquals(await status(await call(handler, "DELETE", lock, { headers: alice })), 200);
  const borg = { ...BORG, ...alice };
  assertEquals(
    await status(await call(handler, "POST", "/bob/s/?cmd=create", { headers: borg })),
    403,
  );
  // borg's no-delete mode refuses create: an admin handler over the same provider creates it.
  assertEquals(
    await status(await call(handler, "POST", "/alice/s/?cmd=create", { headers: borg })),
    403,
  );
  const admin = createHandler({
    provider,
    auth: { authenticate: () => Promise.resolve("alice") },
    privateRepos: true,
    log: () => {},
  });
  assertEquals(
    await status(await call(admin, "POST", "/alice/s/?cmd=create", { headers: BORG })),
    200,
  );
  assertEquals(
    await status(await call(handler, "POST", "/alice/s/packs/k", { body: "v", headers: borg })),
    200,
  );
  assertEquals(
    await status(await call(handler, "DELETE", "/alice/s/packs/k", { headers: borg })),
    403,
  );
});

Deno.test("library: htpasswd auth with a bcrypt entry; log lines go to the function", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-library-test-" });
  try {
    const file = `${dir}/.htpasswd`;
    await Deno.writeTextFile(file, `alice:${bcrypt.hashSync("secret", 4)}\n`);
    const lines: string[] = [];
    const handler = createHandler({
      provider: new MemoryProvider(),
      auth: { htpasswd: file },
      log: (line) => lines.push(line),
    });
    await handler.ready;
    assert(lines.some((l) => l.startsWith("Loaded htpasswd file")), lines.join("\n"));
    const create = "/r/?create=true";
    assertEquals(await status(await call(handler, "POST", create)), 401);
    assertEquals(
      await status(await call(handler, "POST", create, { headers: basic("alice", "wrong") })),
      401,
    );
    assertEquals(
      await status(await call(handler, "POST", create, { headers: basic("alice", "secret") })),
      200,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("library: a missing htpasswd file rejects ready and answers 500", async () => {
  const lines: string[] = [];
  const handler = createHandler({
    provider: new MemoryProvider(),
    auth: { htpasswd: "/nonexistent/stowage/.htpasswd" },
    log: (line) => lines.push(line),
  });
  await assertRejects(() => handler.ready);
  assertEquals(await status(await call(handler, "GET", "/r/config")), 500);
  assertEquals(await status(await call(handler, "GET", "/r/config")), 500);
  assertEquals(lines.filter((l) => l.includes("initialisation failed")).length, 1);
});

Deno.test("library: maxSize counts what the provider already holds, restic and borg", async () => {
  const provider = new MemoryProvider();
  const filler = await provider.begin("old/blob");
  const writer = filler.writable.getWriter();
  await writer.write(new Uint8Array(600));
  await writer.close();
  await filler.commit({ replace: false });
  const handler = createHandler({ provider, maxSize: 1000, log: () => {} });
  await handler.ready;
  assertEquals(await status(await call(handler, "POST", "/r/?create=true")), 200);
  const small = randomBytes(300);
  assertEquals(
    await status(await call(handler, "POST", `/r/data/${sha256Hex(small)}`, { body: small })),
    200,
  );
  const big = randomBytes(200);
  assertEquals(
    await status(await call(handler, "POST", `/r/data/${sha256Hex(big)}`, { body: big })),
    507,
  );
  assertEquals(await status(await call(handler, "POST", "/s/?cmd=create", { headers: BORG })), 200);
  const borg = await call(handler, "POST", "/s/data/k", { body: big, headers: BORG });
  assertEquals(await status(borg), 507);
});

Deno.test("library: verifyUpload false and borgstore false", async () => {
  const provider = new MemoryProvider();
  const handler = createHandler({ provider, verifyUpload: false, borgstore: false, log: () => {} });
  assertEquals(await status(await call(handler, "POST", "/r/?create=true")), 200);
  const id = sha256Hex("announced");
  assertEquals(await status(await call(handler, "POST", `/r/data/${id}`, { body: "other" })), 200);
  const create = await call(handler, "POST", "/s/?cmd=create", { headers: BORG });
  assert(create.status !== 200, `borg create answered ${create.status}`);
  await create.body?.cancel();
  assertEquals(await provider.stat("s"), null);
});

Deno.test("library: invalid options are TypeErrors; StowageError is exported", () => {
  const provider = new MemoryProvider();
  const invalid: unknown[] = [
    {},
    { provider: {} },
    { provider, auth: "basic" },
    { provider, auth: {} },
    { provider, privateRepos: true },
    { provider, maxSize: -1 },
    { provider, maxSize: 1.5 },
  ];
  for (const options of invalid) {
    assertThrows(
      () => createHandler(options as Parameters<typeof createHandler>[0]),
      (e) => e instanceof TypeError,
    );
  }
  assertEquals(new StowageError("NotFound", "x").kind, "NotFound");
});

// ---------------------------------------------------------------------------------------------
// Child processes: the example and the embedding fixture.

interface Served {
  url: string;
  stop(): Promise<void>;
}

/** Runs a Deno script that prints "listening on <url>" on stdout; bounded to 20 s to start. */
async function serveScript(script: string, args: string[]): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-net", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  let match: RegExpMatchArray | null = null;
  while (!(match = text.match(/listening on (http:\/\/\S+)/))) {
    const { value, done } = await reader.read();
    if (done) {
      clearTimeout(timer);
      await child.status;
      throw new Error(`${script} exited before listening:\n${text}`);
    }
    text += value;
  }
  clearTimeout(timer);
  const drain = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    url: match[1],
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await drain.catch(() => {});
    },
  };
}

Deno.test("library: the custom provider example serves restic and borg and journals writes", async () => {
  const served = await serveScript(EXAMPLE, ["--port", "0"]);
  try {
    const go = async (method: string, path: string, init: RequestInit = {}) => {
      const response = await fetch(served.url + path, { method, ...init });
      return { status: response.status, text: await response.text() };
    };
    assertEquals((await go("POST", "/demo/?create=true")).status, 200);
    const blob = randomBytes(4096);
    const id = sha256Hex(blob);
    assertEquals((await go("POST", `/demo/data/${id}`, { body: blob })).status, 200);
    assertEquals((await go("GET", `/demo/data/${id}`)).text.length > 0, true);
    assertEquals((await go("DELETE", `/demo/data/${id}`)).status, 200);
    assertEquals((await go("POST", "/borg/?cmd=create", { headers: BORG })).status, 200);
    assertEquals((await go("POST", "/borg/config/x", { body: "y", headers: BORG })).status, 200);
    const journal = JSON.parse((await go("GET", "/audit")).text) as {
      op: string;
      key: string;
      bytes?: number | null;
    }[];
    assertEquals(
      journal.map(({ op, key, bytes }) => ({ op, key, bytes })),
      [
        { op: "write", key: dataKey("demo", id), bytes: 4096 },
        { op: "delete", key: dataKey("demo", id), bytes: 4096 },
        { op: "write", key: "borg/config/x", bytes: 1 },
      ],
    );
  } finally {
    await served.stop();
  }
});

Deno.test({
  name: "library: real restic against Deno.serve(createHandler({ provider: MemoryProvider }))",
  ignore: peerMissing("restic"),
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "stowage-library-restic-" });
    const served = await serveScript(FIXTURE, []);
    try {
      const source = `${work}/source`;
      await Deno.mkdir(`${source}/sub`, { recursive: true });
      await Deno.writeFile(`${source}/empty`, new Uint8Array());
      await Deno.writeFile(`${source}/sub/blob.bin`, randomBytes(3 * 1024 * 1024));
      await Deno.writeTextFile(`${source}/notes.txt`, "embedded\n".repeat(50));
      const repo = `rest:${served.url}/embedded/`;
      await resticOk(repo, ["init"]);
      await resticOk(repo, ["backup", source]);
      await resticOk(repo, ["check", "--read-data"]);
      await resticOk(repo, ["restore", "latest", "--target", `${work}/restore`]);
      assertEquals(await treeSnapshot(`${work}/restore${source}`), await treeSnapshot(source));
    } finally {
      await served.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

// Type-level check: any object with the Provider shape plugs in.
const _wrapped: Provider = new MemoryProvider();
