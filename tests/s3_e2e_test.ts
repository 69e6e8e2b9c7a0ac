// End to end over Ceph RGW (scripts/ceph-rgw.sh, started by these tests): stowage embedded with
// createHandler over an S3Provider (tests/fixtures/s3_server.ts, 1 MiB parts so restic packs
// and borg packs are multipart uploads) serving the real restic client (full cycle), a
// borg-like BorgStore workload (nested packs, ranged loads, soft delete by move, server-side
// hash, defrag, destroy), two instances sharing one bucket (concurrent restic backups through
// both, then `check --read-data` through the other one), and radosgw killed mid-upload (503,
// nothing half-visible, the next upload succeeds once it is back). Ignored without radosgw
// (and restic for the restic parts) unless STOWAGE_REQUIRE_PEERS=1.

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { CEPH_MISSING, type CephCluster, lazyCeph } from "./_ceph.ts";
import { peerMissing } from "./_peers.ts";
import { randomBytes, treeSnapshot } from "./_server.ts";
import { resticOk } from "./_restic.ts";

const FIXTURE = new URL("./fixtures/s3_server.ts", import.meta.url).pathname;
const BORG = "application/vnd.x.borgstore.rest.v1";
const MiB = 1024 * 1024;
const ceph = lazyCeph();
const NO_RESTIC = CEPH_MISSING || peerMissing("restic");

function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

interface Served {
  url: string;
  stderr: string[];
  stop(): Promise<void>;
}

/** Starts the fixture on a random port with the cluster's env; bounded to 30 s to start. */
async function serveS3(cluster: CephCluster, prefix: string): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      FIXTURE,
      "--prefix",
      prefix,
      "--part-size",
      String(MiB),
    ],
    env: cluster.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const errPump = (async () => {
    for await (const line of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr.push(line);
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let match: RegExpMatchArray | null = null;
  while (!(match = text.match(/listening on (http:\/\/\S+)/))) {
    const { value, done } = await reader.read();
    if (done) {
      clearTimeout(timer);
      await child.status;
      await errPump;
      throw new Error(`s3_server exited before listening:\n${text}\n${stderr.join("")}`);
    }
    text += value;
  }
  clearTimeout(timer);
  const outPump = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    url: match[1],
    stderr,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await outPump.catch(() => {});
      await errPump.catch(() => {});
    },
  };
}

/** A source tree: a few MB of random data in big and small files. */
async function makeSource(dir: string, seed: number): Promise<void> {
  await Deno.mkdir(`${dir}/sub/deeper`, { recursive: true });
  await Deno.writeFile(`${dir}/big.bin`, randomBytes(5 * MiB + seed));
  await Deno.writeFile(`${dir}/sub/medium.bin`, randomBytes(700_000));
  await Deno.writeFile(`${dir}/empty`, new Uint8Array());
  for (let i = 0; i < 60; i++) {
    await Deno.writeTextFile(`${dir}/sub/deeper/f${i}.txt`, `file ${i} of ${seed}\n`.repeat(i));
  }
}

async function fetchStatus(url: string, init: RequestInit = {}): Promise<number> {
  const response = await fetch(url, init);
  await response.body?.cancel();
  return response.status;
}

Deno.test({
  name: "s3 e2e: restic init, backup, check --read-data, restore, forget --prune",
  ignore: NO_RESTIC,
  async fn() {
    const cluster = await ceph.get();
    const prefix = `restic-${crypto.randomUUID()}`;
    const served = await serveS3(cluster, prefix);
    const work = await Deno.makeTempDir({ prefix: "stowage-s3-restic-" });
    try {
      const source = `${work}/source`;
      await makeSource(source, 1);
      const repo = `rest:${served.url}/repo/`;
      await resticOk(repo, ["init"]);
      await resticOk(repo, ["backup", source]);
      await Deno.writeTextFile(`${source}/sub/added.txt`, "second snapshot\n");
      await resticOk(repo, ["backup", source]);
      const snapshots = JSON.parse(await resticOk(repo, ["snapshots", "--json"]));
      assertEquals(snapshots.length, 2);
      await resticOk(repo, ["check", "--read-data"]);
      await resticOk(repo, ["restore", "latest", "--target", `${work}/restore`]);
      assertEquals(await treeSnapshot(`${work}/restore${source}`), await treeSnapshot(source));
      await resticOk(repo, ["forget", "--keep-last", "1", "--prune"]);
      await resticOk(repo, ["check", "--read-data"]);
      assertEquals(JSON.parse(await resticOk(repo, ["snapshots", "--json"])).length, 1);
      // the empty locks directory lists as [] (a directory marker), not 404
      const locks = await fetch(`${served.url}/repo/locks/`, {
        headers: { accept: "application/vnd.x.restic.rest.v2" },
      });
      assertEquals(locks.status, 200);
      assertEquals(await locks.json(), []);
    } finally {
      await served.stop();
      await Deno.remove(work, { recursive: true });
      await cluster.provider("cleanup", { prefix }).removeTree("");
    }
  },
});

interface Result {
  status: number;
  bytes: Uint8Array<ArrayBuffer>;
  text: string;
}

Deno.test({
  name: "s3 e2e: borg-like workload: nested packs, ranges, soft delete, hash, defrag, destroy",
  ignore: CEPH_MISSING,
  async fn() {
    const cluster = await ceph.get();
    const served = await serveS3(cluster, `borg-${crypto.randomUUID()}`);
    const call = async (
      method: string,
      path: string,
      init: { body?: BodyInit; headers?: Record<string, string> } = {},
    ): Promise<Result> => {
      const response = await fetch(`${served.url}/store${path}`, {
        method,
        body: init.body,
        headers: { accept: BORG, ...init.headers },
      });
      const bytes = new Uint8Array(await response.arrayBuffer());
      return { status: response.status, bytes, text: new TextDecoder().decode(bytes) };
    };
    const ok = (r: Result, what: string, status = 200) => {
      assertEquals(r.status, status, `${what} → ${r.status}: ${r.text}`);
      return r;
    };
    const storeItem = async (name: string, data: Uint8Array<ArrayBuffer>) =>
      ok(
        await call("POST", `/${name}`, {
          body: data,
          headers: { "x-content-hash-sha256": sha256(data) },
        }),
        `store ${name}`,
      );
    const list = async (
      dir: string,
    ) => (JSON.parse(ok(await call("GET", `/${dir}/`), `list ${dir}`).text) as {
      name: string;
      size: number;
      directory: boolean;
    }[]);
    try {
      ok(await call("POST", "/?cmd=create"), "create");
      assertEquals(await list(""), [], "a new store lists as []");
      for (const dir of ["config", "keys", "index", "archives", "locks", "packs"]) {
        ok(await call("POST", `/${dir}?cmd=mkdir`), `mkdir ${dir}`);
      }
      for (let i = 0; i < 4; i++) {
        ok(await call("POST", `/packs/0${i}?cmd=mkdir`), "mkdir packs level");
      }
      assertEquals((await list("packs")).map((e) => e.name), ["00", "01", "02", "03"]);
      await storeItem("config/readme", new TextEncoder().encode("borg repo readme"));
      await storeItem("config/id", new TextEncoder().encode("ab".repeat(32)));

      // packs: one 6 MB (a multipart upload), a few small ones, nested as packs/<xx>/<sha256>
      const bigPack = randomBytes(6 * MiB + 123);
      const smallPacks = [1, 2, 3].map((n) => randomBytes(50_000 + n * 777));
      const packName = (data: Uint8Array) => `packs/${sha256(data).slice(0, 2)}/${sha256(data)}`;
      for (const pack of [bigPack, ...smallPacks]) await storeItem(packName(pack), pack);
      const head = ok(await call("HEAD", `/${packName(bigPack)}`), "head");
      assertEquals(head.status, 200);
      // an identical retry is accepted without writing; a different body is refused
      await storeItem(packName(smallPacks[0]), smallPacks[0]);

      // ranged loads across part boundaries
      for (const offset of [0, MiB - 100, 3 * MiB + 7, 6 * MiB]) {
        const r = ok(
          await call("GET", `/${packName(bigPack)}`, {
            headers: { range: `bytes=${offset}-${offset + 4095}` },
          }),
          "ranged load",
          206,
        );
        assertEquals(r.bytes, bigPack.subarray(offset, offset + 4096));
      }

      // soft delete by move, and back
      const archive = `archives/${sha256("archive-1")}`;
      await storeItem(archive, new Uint8Array(0));
      ok(await call("POST", `/?cmd=move&current=${archive}&new=${archive}.del`), "soft delete");
      assertEquals((await list("archives")).map((e) => e.name), [`${sha256("archive-1")}.del`]);
      ok(await call("POST", `/?cmd=move&current=${archive}.del&new=${archive}`), "undelete");
      assertEquals((await list("archives")).map((e) => e.name), [sha256("archive-1")]);

      // server-side hash of every pack
      for (const pack of [bigPack, ...smallPacks]) {
        const r = ok(await call("POST", `/${packName(pack)}?cmd=hash&algorithm=sha256`), "hash");
        assertEquals(r.text, sha256(pack));
      }

      // defrag: two spans of the big pack and the small packs into one new pack
      const sources: [string, number, number][] = [
        [packName(bigPack), 49, 2 * MiB],
        [packName(bigPack), 5 * MiB, 123_456],
        ...smallPacks.map((p): [string, number, number] => [packName(p), 0, p.byteLength]),
      ];
      const expected = new Uint8Array(sources.reduce((n, s) => n + s[2], 0));
      let at = 0;
      for (const [name, offset, size] of sources) {
        const data = name === packName(bigPack)
          ? bigPack
          : smallPacks.find((p) => packName(p) === name)!;
        expected.set(data.subarray(offset, offset + size), at);
        at += size;
      }
      const defragged = ok(
        await call("POST", "/?cmd=defrag&algorithm=sha256&namespace=packs&levels=1", {
          body: JSON.stringify(sources),
        }),
        "defrag",
      ).text;
      assertEquals(defragged, packName(expected));
      assertEquals(sha256(ok(await call("GET", `/${defragged}`), "load").bytes), sha256(expected));
      for (const pack of [bigPack, ...smallPacks]) {
        ok(await call("DELETE", `/${packName(pack)}`), "delete old pack");
      }
      const remaining: string[] = [];
      for (const level of await list("packs")) {
        for (const e of await list(`packs/${level.name}`)) {
          remaining.push(`packs/${level.name}/${e.name}`);
        }
      }
      assertEquals(remaining, [defragged]);

      ok(await call("DELETE", "/?cmd=destroy"), "destroy");
      const gone = await call("GET", "/");
      assert(gone.status >= 400, `destroyed store answers ${gone.status}`);
    } finally {
      await served.stop();
    }
  },
});

Deno.test({
  name: "s3 e2e: two instances share one bucket: concurrent backups, cross-instance checks",
  ignore: NO_RESTIC,
  async fn() {
    const cluster = await ceph.get();
    const prefix = `shared-${crypto.randomUUID()}`;
    const [a, b] = await Promise.all([serveS3(cluster, prefix), serveS3(cluster, prefix)]);
    const work = await Deno.makeTempDir({ prefix: "stowage-s3-shared-" });
    try {
      await Promise.all([makeSource(`${work}/one`, 2), makeSource(`${work}/two`, 3)]);
      const viaA = (repo: string) => `rest:${a.url}/${repo}/`;
      const viaB = (repo: string) => `rest:${b.url}/${repo}/`;
      await Promise.all([resticOk(viaA("one"), ["init"]), resticOk(viaB("two"), ["init"])]);
      await Promise.all([
        resticOk(viaA("one"), ["backup", `${work}/one`]),
        resticOk(viaB("two"), ["backup", `${work}/two`]),
      ]);
      // the second snapshot of each repository goes through the other instance, concurrently
      await Promise.all([
        resticOk(viaB("one"), ["backup", `${work}/one`, `${work}/two`]),
        resticOk(viaA("two"), ["backup", `${work}/two`]),
      ]);
      await Promise.all([
        resticOk(viaB("one"), ["check", "--read-data"]),
        resticOk(viaA("two"), ["check", "--read-data"]),
      ]);
      assertEquals(JSON.parse(await resticOk(viaA("one"), ["snapshots", "--json"])).length, 2);
      assertEquals(JSON.parse(await resticOk(viaB("two"), ["snapshots", "--json"])).length, 2);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await Deno.remove(work, { recursive: true });
      await cluster.provider("cleanup", { prefix }).removeTree("");
    }
  },
});

Deno.test({
  name: "s3 e2e: radosgw killed mid-upload: 503, nothing half-visible, next upload succeeds",
  ignore: CEPH_MISSING,
  async fn() {
    const cluster = await ceph.get();
    const prefix = `fault-${crypto.randomUUID()}`;
    const served = await serveS3(cluster, prefix);
    try {
      assertEquals(await fetchStatus(`${served.url}/repo/?create=true`, { method: "POST" }), 200);
      const data = randomBytes(3 * MiB);
      const id = sha256(data);
      const objectUrl = `${served.url}/repo/data/${id}`;

      // 1.5 MB go out while radosgw runs (part 1 is stored), the rest once it is gone
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let sentFirst!: () => void;
      const firstSent = new Promise<void>((resolve) => (sentFirst = resolve));
      let step = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (step === 0) {
            controller.enqueue(data.slice(0, 1_500_000));
          } else if (step === 1) {
            sentFirst();
            await gate;
            controller.enqueue(data.slice(1_500_000));
          } else {
            controller.close();
          }
          step++;
        },
      });
      const response = fetch(objectUrl, { method: "POST", body });
      await firstSent;
      await new Promise((resolve) => setTimeout(resolve, 1000)); // part 1 reaches radosgw
      await cluster.rgwStop();
      release();
      const started = Date.now();
      const failed = await response;
      await failed.body?.cancel();
      assertEquals(failed.status, 503, `upload while radosgw is down: ${served.stderr.join("")}`);
      assert(Date.now() - started < 15_000, "bounded retries");
      // other requests while it is down
      const small = randomBytes(100);
      assertEquals(
        await Promise.all([
          fetchStatus(objectUrl),
          fetchStatus(`${served.url}/repo/data/${sha256(small)}`, { method: "POST", body: small }),
        ]),
        [503, 503],
      );

      await cluster.rgwStart();
      assertEquals(await fetchStatus(objectUrl, { method: "HEAD" }), 404, "nothing visible");
      const listing = await fetch(`${served.url}/repo/data/`, {
        headers: { accept: "application/vnd.x.restic.rest.v2" },
      });
      assertEquals(await listing.json(), []);
      // the interrupted multipart upload is invisible; the sweep finds and aborts it
      const provider = cluster.provider("cleanup", { prefix });
      assert(await provider.sweepUploads(0) >= 1, "the abandoned multipart upload was swept");

      assertEquals(await fetchStatus(objectUrl, { method: "POST", body: data }), 200);
      const back = await fetch(objectUrl);
      assertEquals(sha256(new Uint8Array(await back.arrayBuffer())), id);
      await provider.removeTree("");
    } finally {
      await served.stop();
    }
  },
});

Deno.test({
  name: "s3 e2e: stop the cluster",
  ignore: CEPH_MISSING,
  async fn() {
    await ceph.stop();
  },
});
