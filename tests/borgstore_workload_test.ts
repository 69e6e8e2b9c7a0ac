// A borg-like BorgStore workload (spec §12): repository layout with nested packs, 0-byte archive
// pointers, soft delete by move, 4 KiB ranged reads from a ~50 MB pack, defrag into
// packs/<xx>/<sha256>, pack hashing and quota; then 8 concurrent clients × 200 mixed operations
// that must all succeed (never 412) and leave exactly the state their models predict.

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { call, type CallResult, startServer, type TestServer } from "./borgstore_helpers.ts";
import { scanUsage } from "../src/policy/borg_quota.ts";

function ok(result: CallResult, what: string, status = 200): CallResult {
  assertEquals(result.status, status, `${what} → ${result.status}: ${result.text}`);
  return result;
}

function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Deterministic pseudo-random bytes (xorshift32), fast enough for 50 MB. */
function pseudoRandom(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < size; i++) out[i] = i & 0xff;
  return out;
}

async function storeVerified(server: TestServer, name: string, data: Uint8Array<ArrayBuffer>) {
  ok(
    await call(server, "POST", `/${name}`, {
      body: data,
      headers: { "X-Content-hash-sha256": sha256(data) },
    }),
    `store ${name}`,
  );
}

/** Depth-first listing like the borgstore Store: only non-directories, full names. */
async function listRecursive(server: TestServer, dir: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const entries = JSON.parse(ok(await call(server, "GET", `/${dir}/`), `list ${dir}`).text) as {
    name: string;
    size: number;
    directory: boolean;
  }[];
  for (const entry of entries) {
    const name = `${dir}/${entry.name}`;
    if (entry.directory) {
      for (const [k, v] of await listRecursive(server, name)) found.set(k, v);
    } else {
      found.set(name, entry.size);
    }
  }
  return found;
}

function packName(data: Uint8Array): string {
  const id = sha256(data);
  return `packs/${id.slice(0, 2)}/${id}`;
}

Deno.test({
  name: "borg-like workload: layout, packs, ranges, soft delete, defrag, hash, quota",
  sanitizeResources: true,
  fn: async () => {
    const server = await startServer({ quota: 1024 * 1024 * 1024, create: true });
    try {
      // repo-create
      await storeVerified(server, "config/readme", new TextEncoder().encode("borg repo readme"));
      await storeVerified(server, "config/version", new TextEncoder().encode("4"));
      await storeVerified(server, "config/id", new TextEncoder().encode("ab".repeat(32)));
      const key = new TextEncoder().encode("encrypted key material");
      await storeVerified(server, `keys/${sha256(key)}`, key);
      const emptyIndex = new Uint8Array(0);
      await storeVerified(server, `index/${sha256(emptyIndex)}`, emptyIndex);
      await storeVerified(server, "config/manifest", new TextEncoder().encode("manifest v1"));

      // locking
      const lock = new TextEncoder().encode('{"exclusive": false, "pid": 1}');
      const lockName = `locks/${sha256(lock)}`;
      await storeVerified(server, lockName, lock);
      assertEquals((await listRecursive(server, "locks")).size, 1);
      assertEquals(ok(await call(server, "GET", `/${lockName}`), "load lock").bytes, lock);

      // borg create: one ~50 MB pack and a few small ones, then archive + manifest overwrite
      const bigPack = pseudoRandom(50_000_000, 7);
      const bigName = packName(bigPack);
      await storeVerified(server, bigName, bigPack);
      const smallPacks = [1, 2, 3].map((seed) => pseudoRandom(100_000 + seed * 777, seed));
      for (const pack of smallPacks) await storeVerified(server, packName(pack), pack);
      await storeVerified(
        server,
        "index/" + sha256("fragment"),
        new TextEncoder().encode("fragment"),
      );
      const archiveId = sha256("archive-1");
      await storeVerified(server, `archives/${archiveId}`, new Uint8Array(0));
      await storeVerified(server, "config/manifest", new TextEncoder().encode("manifest v2"));
      ok(await call(server, "DELETE", `/${lockName}`), "unlock");

      // sizes via HEAD and listings
      const head = ok(await call(server, "HEAD", `/${bigName}`), "head pack");
      assertEquals(head.headers.get("content-length"), "50000000");
      const packs = await listRecursive(server, "packs");
      assertEquals(packs.size, 4);
      assertEquals(packs.get(bigName), 50_000_000);
      const archive = ok(await call(server, "HEAD", `/archives/${archiveId}`), "head archive");
      assertEquals(archive.headers.get("content-length"), "0");

      // extract: 4 KiB ranged reads spread over the big pack, plus a tail read
      for (let i = 0; i < 50; i++) {
        const offset = Math.floor((i * 49_995_000) / 50);
        const r = ok(
          await call(server, "GET", `/${bigName}`, {
            headers: { range: `bytes=${offset}-${offset + 4095}` },
          }),
          "ranged load",
          206,
        );
        assertEquals(r.bytes, bigPack.subarray(offset, offset + 4096));
      }
      const tail = ok(
        await call(server, "GET", `/${bigName}`, { headers: { range: "bytes=-4096" } }),
        "tail",
        206,
      );
      assertEquals(tail.bytes, bigPack.subarray(50_000_000 - 4096));

      // borg delete / undelete: soft delete by move
      const archivePath = `archives/${archiveId}`;
      ok(
        await call(server, "POST", `/?cmd=move&current=${archivePath}&new=${archivePath}.del`),
        "soft delete",
      );
      assertEquals([...(await listRecursive(server, "archives")).keys()], [`${archivePath}.del`]);
      ok(
        await call(server, "POST", `/?cmd=move&current=${archivePath}.del&new=${archivePath}`),
        "undelete",
      );
      assertEquals([...(await listRecursive(server, "archives")).keys()], [archivePath]);

      // borg check: hash every pack server-side
      for (const [name] of packs) {
        const r = ok(await call(server, "POST", `/${name}?cmd=hash&algorithm=sha256`), "hash");
        assertEquals(r.text, name.slice(name.lastIndexOf("/") + 1));
      }

      // borg compact: keep two spans of the big pack, merge the small packs, drop the old ones
      const sources: [string, number, number][] = [
        [bigName, 49, 1_000_000],
        [bigName, 30_000_000, 123_456],
        ...smallPacks.map((p): [string, number, number] => [packName(p), 0, p.byteLength]),
      ];
      const expected = new Uint8Array(sources.reduce((n, s) => n + s[2], 0));
      let at = 0;
      for (const [name, offset, size] of sources) {
        const data = name === bigName ? bigPack : smallPacks.find((p) => packName(p) === name)!;
        expected.set(data.subarray(offset, offset + size), at);
        at += size;
      }
      const defragged = ok(
        await call(server, "POST", "/?cmd=defrag&algorithm=sha256&namespace=packs&levels=1", {
          body: JSON.stringify(sources),
        }),
        "defrag",
      ).text;
      assertEquals(defragged, packName(expected));
      const merged = ok(await call(server, "GET", `/${defragged}`), "load merged").bytes;
      assertEquals(merged.byteLength, expected.byteLength);
      assertEquals(sha256(merged), sha256(expected));
      for (const [name] of packs) ok(await call(server, "DELETE", `/${name}`), "delete old pack");
      assertEquals([...(await listRecursive(server, "packs")).keys()], [defragged]);

      // quota: usage equals the bytes on disk
      const quota = JSON.parse(ok(await call(server, "POST", "/?cmd=quota"), "quota").text);
      assertEquals(quota.limit, 1024 * 1024 * 1024);
      assertEquals(quota.usage, await scanUsage(server.root));

      // repo-delete
      ok(await call(server, "DELETE", "/?cmd=destroy"), "destroy");
      ok(await call(server, "HEAD", "/"), "gone", 410);
    } finally {
      await server.close();
    }
  },
});

/** Small deterministic PRNG for the concurrent clients. */
function rng(seed: number): () => number {
  let x = seed * 2654435761 >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const MANIFESTS = Array.from(
  { length: 8 },
  (_, i) => new TextEncoder().encode(`manifest of client ${i} `.repeat(i * 50 + 1)),
);

async function runClient(server: TestServer, client: number, model: Map<string, Uint8Array>) {
  const random = rng(client + 1);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const own = () => [...model.keys()];
  let counter = 0;
  for (let op = 0; op < 200; op++) {
    const roll = random();
    const names = own();
    if (roll < 0.25 || names.length === 0) {
      const data = pseudoRandom(Math.floor(random() * 20_000), client * 1000 + op);
      const id = sha256(`${client}-${counter++}`);
      const name = `c${client}/${id.slice(0, 2)}/${id}`;
      await storeVerified(server, name, data);
      model.set(name, data);
    } else if (roll < 0.35) {
      const name = pick(names);
      const data = pseudoRandom(Math.floor(random() * 20_000), client * 7000 + op);
      await storeVerified(server, name, data);
      model.set(name, data);
    } else if (roll < 0.5) {
      const name = pick(names);
      const data = model.get(name)!;
      if (data.byteLength > 10 && random() < 0.5) {
        const start = Math.floor(random() * (data.byteLength - 10));
        const r = ok(
          await call(server, "GET", `/${name}`, {
            headers: { range: `bytes=${start}-${start + 9}` },
          }),
          "range",
          206,
        );
        assertEquals(r.bytes, data.subarray(start, start + 10));
      } else {
        assertEquals(ok(await call(server, "GET", `/${name}`), "load").bytes, data);
      }
    } else if (roll < 0.6) {
      const name = pick(names);
      const r = ok(await call(server, "HEAD", `/${name}`), "head");
      assertEquals(Number(r.headers.get("content-length")), model.get(name)!.byteLength);
    } else if (roll < 0.68) {
      const name = pick(names);
      ok(await call(server, "DELETE", `/${name}`), "delete");
      model.delete(name);
    } else if (roll < 0.78) {
      const name = pick(names);
      const next = name.endsWith(".del") ? name.slice(0, -4) : `${name}.del`;
      ok(await call(server, "POST", `/?cmd=move&current=${name}&new=${next}`), "move");
      model.set(next, model.get(name)!);
      model.delete(name);
    } else if (roll < 0.83) {
      const name = pick(names);
      const r = ok(await call(server, "POST", `/${name}?cmd=hash`), "hash");
      assertEquals(r.text, sha256(model.get(name)!));
    } else if (roll < 0.88) {
      const name = pick(names);
      const dir = name.slice(0, name.lastIndexOf("/"));
      const entries = JSON.parse(ok(await call(server, "GET", `/${dir}/`), "list").text) as {
        name: string;
        size: number;
      }[];
      const expected = names.filter((n) => n.startsWith(`${dir}/`)).map((n) =>
        n.slice(dir.length + 1)
      );
      assertEquals(entries.map((e) => e.name), expected.sort());
    } else if (roll < 0.94) {
      const r = ok(await call(server, "GET", "/config/manifest"), "load manifest");
      assert(
        MANIFESTS.some((m) => m.byteLength === r.bytes.byteLength && sha256(m) === sha256(r.bytes)),
      );
    } else {
      await storeVerified(server, "config/manifest", MANIFESTS[client] as Uint8Array<ArrayBuffer>);
    }
  }
}

Deno.test("concurrency: 8 clients × 200 mixed operations, no errors, consistent state", async () => {
  const server = await startServer({ quota: 1024 * 1024 * 1024, create: true });
  try {
    await storeVerified(server, "config/manifest", MANIFESTS[0] as Uint8Array<ArrayBuffer>);
    const models = Array.from({ length: 8 }, () => new Map<string, Uint8Array>());
    await Promise.all(models.map((model, client) => runClient(server, client, model)));
    for (const [client, model] of models.entries()) {
      const listed = await listRecursive(server, `c${client}`).catch(() => new Map());
      assertEquals([...listed.keys()].sort(), [...model.keys()].sort());
      for (const [name, data] of model) {
        assertEquals(listed.get(name), data.byteLength);
        const r = ok(await call(server, "POST", `/${name}?cmd=hash`), "final hash");
        assertEquals(r.text, sha256(data));
      }
    }
    const quota = JSON.parse(ok(await call(server, "POST", "/?cmd=quota"), "quota").text);
    assertEquals(quota.usage, await scanUsage(server.root));
  } finally {
    await server.close();
  }
});
