// BorgStore REST workloads against the same stowage process (requests carrying the BorgStore
// Accept header, store /bstore/): store of large and small items with X-Content-hash-sha256,
// ranged GET, HEAD, list of packs/ab/, then a checked read-back. No reference server speaks this
// protocol, so the reference column stays empty. When `POST /bstore/?cmd=create` does not answer
// 200 the section records "not available" instead of failing.

import { formatBytes } from "./config.ts";
import { log, measure, type Session } from "./context.ts";
import { BenchFailure, expectStatus, requestOnce, runPool } from "./http.ts";
import { mulberry32 } from "./payload.ts";
import { checkRanges, rangedGets, timedList, uploadSet, verifySet } from "./restic.ts";
import { pageBytes } from "./warm.ts";

const ACCEPT = "application/vnd.x.borgstore.rest.v1";
const STORE = "/bstore";
const DIR = "packs/ab";

export const NOT_AVAILABLE_LABEL = "borgstore";

export async function runBorgstore(session: Session): Promise<void> {
  const { server, options, data, results } = session;
  const s = options.sizes;
  const port = server.port;
  const headers = { Accept: ACCEPT };
  let status: number | null = null;
  try {
    status = (await requestOnce(port, `${STORE}/?cmd=create`, { method: "POST", headers })).status;
  } catch {
    status = null;
  }
  if (status !== 200) {
    results.remark(NOT_AVAILABLE_LABEL, "not available");
    log(`borgstore: not available (create answered ${status ?? "nothing"})`);
    return;
  }
  for (const dir of ["packs", DIR]) {
    await requestOnce(port, `${STORE}/${dir}?cmd=mkdir`, { method: "POST", headers });
  }
  const prefix = `${STORE}/${DIR}/`;
  const large = data.large;
  const small = data.small;
  const largeCount = Math.min(s.borgLargeCount, large.count);
  const smallCount = Math.min(s.borgSmallCount, small.count);
  const hashHeaders = (id: string) => ({ ...headers, "X-Content-hash-sha256": id });

  await measure(
    session,
    "borg-upload-l",
    `borgstore: store ${largeCount} × ${formatBytes(large.size)}, c${s.largeConc}`,
    "MiB/s",
    async () =>
      (await uploadSet(port, prefix, large, largeCount, s.largeConc, hashHeaders)).mibPerSecond,
    pageBytes(largeCount, large.size),
  );
  await measure(
    session,
    "borg-upload-s",
    `borgstore: store ${smallCount} × ${formatBytes(small.size)}, c${s.smallConc}`,
    "req/s",
    async () =>
      (await uploadSet(port, prefix, small, smallCount, s.smallConc, hashHeaders))
        .requestsPerSecond,
    pageBytes(smallCount, small.size),
  );
  const random = mulberry32(3);
  const plan = Array.from({ length: s.borgRangeCount }, () => ({
    index: Math.floor(random() * largeCount),
    offset: Math.floor(random() * (large.size - s.rangeSize + 1)),
    length: s.rangeSize,
  }));
  await measure(
    session,
    "borg-range",
    `borgstore: ranged GET ${plan.length} × ${formatBytes(s.rangeSize)}, c${s.rangeConc}`,
    "MiB/s",
    async () => (await rangedGets(port, prefix, large, plan, s.rangeConc, headers)).mibPerSecond,
  );
  const sample = plan.slice(0, 16);
  const bodies: Uint8Array[] = [];
  await rangedGets(port, prefix, large, sample, 4, headers, bodies);
  checkRanges(large, sample, bodies, "borgstore ranged GET");
  await measure(
    session,
    "borg-head",
    `borgstore: HEAD ${smallCount}, c${s.headConc}`,
    "req/s",
    async () => {
      const r = await runPool(port, smallCount, s.headConc, async (i, conn) => {
        const id = small.ids[i];
        const answer = await conn.request(`${prefix}${id}`, { method: "HEAD", headers });
        expectStatus(answer, [200], `borgstore HEAD ${prefix}${id}`);
        const length = Number(answer.headers.get("content-length"));
        if (length !== small.size) {
          throw new BenchFailure(`borgstore HEAD ${prefix}${id}: Content-Length ${length}`);
        }
        return 0;
      });
      return r.count / r.seconds;
    },
  );
  await measure(
    session,
    "borg-list",
    `borgstore: list ${largeCount + smallCount} entries (median of ${s.listReps})`,
    "ms",
    () =>
      timedList(
        port,
        prefix,
        headers,
        s.listReps,
        largeCount + smallCount,
        (e) => e.size === large.size || e.size === small.size,
      ),
  );
  const started = performance.now();
  await verifySet(port, prefix, large, largeCount, 4, headers);
  await verifySet(port, prefix, small, smallCount, 8, headers);
  log(
    `stowage   borgstore: verified every stored item in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}
