// The restic REST workloads, run against one fresh server: large and small uploads, ranged GETs
// from the large objects, HEAD, v2 list, small GETs, 4 KiB ranged reads from one big object and
// large downloads; then every uploaded object is read back and checked (size + SHA-256).
// Objects live in two repositories: /bench-l/ (large and the ranged-read object) and /bench-s/
// (the small objects, so that the list workload sees exactly the small-object count).

import { createHash } from "node:crypto";
import { formatBytes, type Workload } from "./config.ts";
import { log, measure, MiB, type Session } from "./context.ts";
import { BenchFailure, expectStatus, H1Connection, requestOnce, runPool } from "./http.ts";
import { mulberry32, type ObjectSet, sha256Hex } from "./payload.ts";
import { pageBytes } from "./warm.ts";

const V2 = "application/vnd.x.restic.rest.v2";
const LARGE_REPO = "/bench-l";
const SMALL_REPO = "/bench-s";

export const RESTIC_WORKLOADS: Workload[] = [
  "upload-large",
  "upload-small",
  "range",
  "head",
  "list",
  "get-small",
  "range-4k",
  "download",
];

export async function createRepo(port: number, repo: string): Promise<void> {
  const answer = await requestOnce(port, `${repo}/?create=true`, { method: "POST" });
  expectStatus(answer, [200], `create repo ${repo}`);
}

const OCTETS = { "Content-Type": "application/octet-stream" };

/** Uploads objects 0..count-1 of `set` to `<prefix><id>`; returns MiB/s and req/s. */
export async function uploadSet(
  port: number,
  prefix: string,
  set: ObjectSet,
  count: number,
  concurrency: number,
  headers: (id: string) => Record<string, string> = () => ({}),
): Promise<{ mibPerSecond: number; requestsPerSecond: number }> {
  const scratch = Array.from({ length: Math.min(concurrency, count) }, () => set.scratch());
  const result = await runPool(port, count, concurrency, async (index, conn, loop) => {
    const id = set.ids[index];
    const answer = await conn.request(`${prefix}${id}`, {
      method: "POST",
      body: set.fill(scratch[loop], index),
      headers: { ...OCTETS, ...headers(id) },
    });
    expectStatus(answer, [200, 201], `upload ${prefix}${id}`);
    return set.size;
  });
  return {
    mibPerSecond: result.bytes / MiB / result.seconds,
    requestsPerSecond: result.count / result.seconds,
  };
}

/** GETs objects 0..count-1 of `set` and checks size and SHA-256; throws on any mismatch. */
export async function verifySet(
  port: number,
  prefix: string,
  set: ObjectSet,
  count: number,
  concurrency: number,
  headers: Record<string, string> = {},
  bodies?: (Uint8Array | undefined)[],
): Promise<void> {
  const bad: string[] = [];
  await runPool(port, count, concurrency, async (index, conn) => {
    const id = set.ids[index];
    let size: number;
    let digest: string;
    const known = bodies?.[index];
    if (known) {
      size = known.byteLength;
      digest = sha256Hex(known);
    } else {
      const hash = createHash("sha256");
      const answer = await conn.request(`${prefix}${id}`, {
        headers,
        sink: (chunk) => hash.update(chunk),
      });
      expectStatus(answer, [200], `verify GET ${prefix}${id}`);
      size = answer.length;
      digest = hash.digest("hex");
    }
    if (size !== set.size || digest !== id) {
      bad.push(`${prefix}${id}: got ${size} B sha256 ${digest}, want ${set.size} B`);
    }
    return size;
  });
  if (bad.length) {
    throw new BenchFailure(
      `VERIFY FAILED: ${bad.length} of ${count} objects differ:\n  ${
        bad.slice(0, 10).join("\n  ")
      }`,
    );
  }
}

interface RangePlan {
  index: number;
  offset: number;
  length: number;
}

function planRanges(seed: number, count: number, objects: number, size: number, length: number) {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (): RangePlan => {
    const index = Math.floor(random() * objects);
    const offset = Math.floor(random() * (size - length + 1));
    return { index, offset, length };
  });
}

/** Runs ranged GETs by plan; every answer must be 206 with exactly the range's length. */
export async function rangedGets(
  port: number,
  prefix: string,
  set: ObjectSet,
  plan: RangePlan[],
  concurrency: number,
  headers: Record<string, string> = {},
  keep?: Uint8Array[],
): Promise<{ mibPerSecond: number; requestsPerSecond: number }> {
  const result = await runPool(port, plan.length, concurrency, async (i, conn) => {
    const { index, offset, length } = plan[i];
    const answer = await conn.request(`${prefix}${set.ids[index]}`, {
      headers: { ...headers, Range: `bytes=${offset}-${offset + length - 1}` },
      collect: keep !== undefined,
    });
    expectStatus(answer, [206], `ranged GET ${prefix}${set.ids[index]}`);
    if (keep) keep[i] = answer.body!;
    const got = answer.length;
    if (got !== length) {
      throw new BenchFailure(`ranged GET ${prefix}${set.ids[index]}: ${got} B, want ${length}`);
    }
    return got;
  });
  return {
    mibPerSecond: result.bytes / MiB / result.seconds,
    requestsPerSecond: result.count / result.seconds,
  };
}

/** Compares kept range bodies with the expected bytes of `set`. */
export function checkRanges(set: ObjectSet, plan: RangePlan[], bodies: Uint8Array[], what: string) {
  const scratch = set.scratch();
  for (let i = 0; i < plan.length; i++) {
    const { index, offset, length } = plan[i];
    const want = set.fill(scratch, index).subarray(offset, offset + length);
    const got = bodies[i];
    if (!got || got.byteLength !== length || sha256Hex(got) !== sha256Hex(want)) {
      throw new BenchFailure(`VERIFY FAILED: ${what} #${i} (bytes ${offset}+${length}) differs`);
    }
  }
}

/** Timed v2 list (median of `reps`, ms); checks the entry count and sizes. */
export async function timedList(
  port: number,
  path: string,
  headers: Record<string, string>,
  reps: number,
  expectCount: number,
  expectSize: (entry: { name: string; size: number }) => boolean,
): Promise<number> {
  const conn = new H1Connection(port);
  const times: number[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      const started = performance.now();
      const answer = await conn.request(path, { headers, collect: true });
      expectStatus(answer, [200], `list ${path}`);
      const entries = JSON.parse(new TextDecoder().decode(answer.body!)) as {
        name: string;
        size: number;
        directory?: boolean;
      }[];
      times.push(performance.now() - started);
      const files = entries.filter((e) => !e.directory);
      if (files.length !== expectCount || !files.every(expectSize)) {
        throw new BenchFailure(`list ${path}: ${files.length} entries, want ${expectCount}`);
      }
    }
  } finally {
    conn.close();
  }
  times.sort((x, y) => x - y);
  return times[times.length >> 1];
}

/** All restic workloads selected in the options, then the read-back check. */
export async function runResticWorkloads(session: Session): Promise<void> {
  const { server, options, data } = session;
  const s = options.sizes;
  const only = options.only;
  const port = server.port;
  const wantLarge = only.has("upload-large") || only.has("range") || only.has("download");
  const wantSmall = ["upload-small", "head", "list", "get-small"].some((w) =>
    only.has(w as Workload)
  );
  await createRepo(port, LARGE_REPO);
  await createRepo(port, SMALL_REPO);
  const largePrefix = `${LARGE_REPO}/data/`;
  const smallPrefix = `${SMALL_REPO}/data/`;
  const large = data.large;
  const small = data.small;

  if (wantLarge) {
    const record = only.has("upload-large");
    await measure(
      session,
      "upload-large",
      `upload ${s.largeCount} × ${formatBytes(s.largeSize)}, c${s.largeConc}`,
      "MiB/s",
      async () => {
        const r = await uploadSet(port, largePrefix, large, s.largeCount, s.largeConc);
        return record ? r.mibPerSecond : null;
      },
      pageBytes(s.largeCount, s.largeSize),
    );
  }
  if (wantSmall) {
    const record = only.has("upload-small");
    await measure(
      session,
      "upload-small",
      `upload ${s.smallCount} × ${formatBytes(s.smallSize)}, c${s.smallConc}`,
      "req/s",
      async () => {
        const r = await uploadSet(port, smallPrefix, small, s.smallCount, s.smallConc);
        return record ? r.requestsPerSecond : null;
      },
      pageBytes(s.smallCount, s.smallSize),
    );
  }
  if (only.has("range")) {
    const plan = planRanges(1, s.rangeCount, s.largeCount, s.largeSize, s.rangeSize);
    await measure(
      session,
      "range",
      `ranged GET ${s.rangeCount} × ${formatBytes(s.rangeSize)}, c${s.rangeConc}`,
      "MiB/s",
      async () => (await rangedGets(port, largePrefix, large, plan, s.rangeConc)).mibPerSecond,
    );
    // Content check of a sample of the ranges (untimed).
    const sample = plan.slice(0, 32);
    const bodies: Uint8Array[] = [];
    await rangedGets(port, largePrefix, large, sample, 4, {}, bodies);
    checkRanges(large, sample, bodies, "ranged GET");
  }
  if (only.has("head")) {
    await measure(session, "head", `HEAD ${s.headCount}, c${s.headConc}`, "req/s", async () => {
      const r = await runPool(port, s.headCount, s.headConc, async (i, conn) => {
        const id = small.ids[i % s.smallCount];
        const answer = await conn.request(`${smallPrefix}${id}`, { method: "HEAD" });
        expectStatus(answer, [200], `HEAD ${smallPrefix}${id}`);
        const length = Number(answer.headers.get("content-length"));
        if (length !== small.size) {
          throw new BenchFailure(`HEAD ${smallPrefix}${id}: Content-Length ${length}`);
        }
        return 0;
      });
      return r.count / r.seconds;
    });
  }
  if (only.has("list")) {
    await measure(
      session,
      "list",
      `list ${s.smallCount} entries (v2, median of ${s.listReps})`,
      "ms",
      () =>
        timedList(
          port,
          smallPrefix,
          { Accept: V2 },
          s.listReps,
          s.smallCount,
          (e) => e.size === small.size,
        ),
    );
  }
  let smallBodies: (Uint8Array | undefined)[] | undefined;
  if (only.has("get-small")) {
    const bodies: Uint8Array[] = new Array(s.smallCount);
    await measure(
      session,
      "get-small",
      `GET ${s.smallCount} × ${formatBytes(s.smallSize)}, c${s.smallGetConc}`,
      "req/s",
      async () => {
        const r = await runPool(port, s.smallCount, s.smallGetConc, async (i, conn) => {
          const answer = await conn.request(`${smallPrefix}${small.ids[i]}`, { collect: true });
          expectStatus(answer, [200], `GET ${smallPrefix}${small.ids[i]}`);
          bodies[i] = answer.body!;
          return answer.length;
        });
        return r.count / r.seconds;
      },
    );
    smallBodies = bodies;
  }
  if (only.has("range-4k")) {
    const object = data.rangeObject;
    await uploadSet(port, largePrefix, object, 1, 1);
    const plan = planRanges(2, s.range4kCount, 1, object.size, 4096);
    const bodies: Uint8Array[] = new Array(plan.length);
    await measure(
      session,
      "range-4k",
      `4 KiB ranged GET × ${s.range4kCount}, ${formatBytes(object.size)} object, c${s.range4kConc}`,
      "req/s",
      async () =>
        (await rangedGets(port, largePrefix, object, plan, s.range4kConc, {}, bodies))
          .requestsPerSecond,
    );
    checkRanges(object, plan, bodies, "4 KiB ranged GET");
    await verifySet(port, largePrefix, object, 1, 1);
  }
  if (only.has("download")) {
    await measure(
      session,
      "download",
      `download ${s.downloadCount} × ${formatBytes(s.largeSize)}, c${s.downloadConc}`,
      "MiB/s",
      async () => {
        const r = await runPool(port, s.downloadCount, s.downloadConc, async (i, conn) => {
          const id = large.ids[i % s.largeCount];
          const answer = await conn.request(`${largePrefix}${id}`);
          expectStatus(answer, [200], `GET ${largePrefix}${id}`);
          const got = answer.length;
          if (got !== large.size) {
            throw new BenchFailure(`GET ${largePrefix}${id}: ${got} B, want ${large.size}`);
          }
          return got;
        });
        return r.bytes / MiB / r.seconds;
      },
    );
  }

  const started = performance.now();
  if (wantLarge) await verifySet(port, largePrefix, large, s.largeCount, 4);
  if (wantSmall) await verifySet(port, smallPrefix, small, s.smallCount, 8, {}, smallBodies);
  log(
    `${server.kind.padEnd(9)} verified every uploaded object (size + SHA-256) in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}
