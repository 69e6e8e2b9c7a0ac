// Part 5, concurrency. Three scenarios, each against a server started on a pre-created layout
// (so no directory appears after start and the quota model is exact):
// - quota: 16 concurrent uploaders (restic and borg, fixed length and chunked, with deletes of
//   their own objects) against a small --max-size while a sampler walks the data directory;
//   the bytes really on disk (temp files included, hard links counted once) must never exceed
//   the limit; every 200 must read back; only 200 and 507 are acceptable answers; afterwards
//   the reported usage equals the disk;
// - identical uploads: many clients upload the same object at once (restic, verification on;
//   borg with X-Content-hash-sha256): all must get 200, and exactly one correct file must remain
//   with no temp file beside it (otherwise a duplicate commit);
// - races: the same borg item moved to two destinations and deleted by many clients at once
//   (exactly one of them may succeed; the item ends up in exactly one place, or nowhere if the
//   delete won), ping-pong moves a→b / b→a (the item ends in exactly one of a and b), and
//   concurrent restic uploads and deletes of one ID (present and correct, or absent); no 5xx;
//   afterwards the reported usage equals the disk.

import { randomBytes } from "../../tests/_server.ts";
import {
  BORG,
  bySize,
  copyBytes,
  type Figure,
  INFO,
  measureDisk,
  metricsQuotaUsage,
  type PartContext,
  precreateLayout,
  Rng,
  sha256Hex,
  sleep,
  startServe,
  TEMP_MARKER,
  tryRequest,
  ZERO,
} from "./common.ts";

interface Tally {
  exceeded: number;
  samples: number;
  uploads: number;
  refusals: number;
  duplicates: number;
  raceErrors: number;
  details: string[];
}

function note(tally: Tally, line: string): void {
  if (tally.details.length < 60) tally.details.push(line);
}

function borgPath(store: string, id: string): string {
  return `/${store}/packs/${id.slice(0, 2)}/${id}`;
}

async function quotaScenario(ctx: PartContext, tally: Tally, rng: Rng): Promise<void> {
  const sizes = bySize(ctx.scale, {
    test: { uploads: 6, room: 2_000_000 },
    reduced: { uploads: 12, room: 3_000_000 },
    full: { uploads: 60, room: 3_000_000 },
  });
  const data = `${ctx.tmp}/quota`;
  await precreateLayout(data, { restic: ["q"], borg: ["qb"] });
  await Deno.writeTextFile(`${data}/q/config`, "config");
  const initial = await measureDisk(data);
  const limit = initial.usage + sizes.room;
  const server = await startServe([
    "--path",
    data,
    "--no-auth",
    "--max-size",
    String(limit),
    "--prometheus",
  ]);
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const disk = await measureDisk(data);
      tally.samples++;
      if (disk.inodeUsage > limit) {
        tally.exceeded++;
        note(tally, `disk ${disk.inodeUsage} > limit ${limit} (${disk.temps.length} temp files)`);
      }
      await sleep(15);
    }
  })();
  try {
    await Promise.all(Array.from({ length: 16 }, async (_, worker) => {
      const wrng = rng.fork(worker);
      const borg = worker % 2 === 1;
      const mine: { path: string; id: string }[] = [];
      for (let i = 0; i < sizes.uploads; i++) {
        const body = randomBytes(wrng.int(10_000, 400_000));
        const id = sha256Hex(body);
        const path = borg ? borgPath("qb", id) : `/q/data/${id}`;
        const headers: Record<string, string> = borg
          ? { accept: BORG, "x-content-hash-sha256": id }
          : {};
        const payload: BodyInit = wrng.chance(0.3)
          ? new ReadableStream<Uint8Array>({
            start(c) {
              for (let at = 0; at < body.byteLength; at += 65536) {
                c.enqueue(body.slice(at, at + 65536));
              }
              c.close();
            },
          })
          : body;
        const reply = await tryRequest(server.url + path, {
          method: "POST",
          headers,
          body: payload,
        });
        tally.uploads++;
        if (reply.status === 507) tally.refusals++;
        else if (reply.status === 200) {
          const back = await tryRequest(server.url + path, { headers });
          if (back.status !== 200 || sha256Hex(back.body) !== id) {
            tally.raceErrors++;
            note(tally, `quota: ${path} answered 200 but reads back ${back.status}`);
          }
          mine.push({ path, id });
        } else {
          tally.raceErrors++;
          note(tally, `quota: POST ${path} → ${reply.status}`);
        }
        if (mine.length > 0 && wrng.chance(0.35)) {
          const victim = mine.splice(wrng.int(0, mine.length - 1), 1)[0];
          const del = await tryRequest(server.url + victim.path, { method: "DELETE", headers });
          if (del.status !== 200) {
            tally.raceErrors++;
            note(tally, `quota: DELETE ${victim.path} → ${del.status}`);
          }
        }
      }
    }));
    sampling = false;
    await sampler;
    const disk = await measureDisk(data);
    if (disk.inodeUsage > limit) tally.exceeded++;
    // directories are counted at start only (rest-server); one that grew counts at that size
    const expected = disk.usage - disk.dirBytes + initial.dirBytes;
    const reported = await metricsQuotaUsage(server.url);
    if (reported !== expected) {
      tally.raceErrors++;
      note(tally, `quota: reported usage ${reported} ≠ disk ${expected} after the uploads`);
    }
    if (disk.temps.length > 0) {
      tally.raceErrors++;
      note(tally, `quota: ${disk.temps.length} temp files left`);
    }
  } finally {
    sampling = false;
    await sampler;
    await server.stop();
  }
}

async function identicalScenario(
  ctx: PartContext,
  tally: Tally,
  rng: Rng,
  url: string,
  data: string,
): Promise<void> {
  const rounds = bySize(ctx.scale, { test: 3, reduced: 8, full: 30 });
  const clients = bySize(ctx.scale, { test: 12, reduced: 24, full: 32 });
  const sizes = [0, 1, 1024, 100_000, 1_000_000, 3_000_000];
  for (let round = 0; round < rounds; round++) {
    const body = randomBytes(
      sizes[round % sizes.length] + (round >= sizes.length ? rng.int(1, 999) : 0),
    );
    const id = sha256Hex(body);
    for (const borg of [false, true]) {
      const path = borg ? borgPath("cb", id) : `/c/data/${id}`;
      const headers: Record<string, string> = borg
        ? { accept: BORG, "x-content-hash-sha256": id }
        : {};
      const statuses = await Promise.all(
        Array.from(
          { length: clients },
          () =>
            tryRequest(url + path, { method: "POST", headers, body: copyBytes(body) }).then((r) =>
              r.status
            ),
        ),
      );
      // exactly one file with the right bytes; no temp file beside it
      const dir = borg ? `${data}/cb/packs/${id.slice(0, 2)}` : `${data}/c/data/${id.slice(0, 2)}`;
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
        n.includes(id.slice(0, 32))
      );
      const temps = names.filter((n) => n.includes(TEMP_MARKER));
      const finals = names.filter((n) => n === id);
      let correct = false;
      if (finals.length === 1) correct = sha256Hex(Deno.readFileSync(`${dir}/${id}`)) === id;
      const bad = statuses.filter((s) => s !== 200);
      if (bad.length > 0 || finals.length !== 1 || temps.length > 0 || !correct) {
        tally.duplicates++;
        note(
          tally,
          `identical ${borg ? "borg" : "restic"} ${body.byteLength} B × ${clients}: statuses ${
            bad.join(",") || "all 200"
          }, ${finals.length} file(s), ${temps.length} temp, correct ${correct}`,
        );
      }
    }
  }
}

async function raceScenario(
  ctx: PartContext,
  tally: Tally,
  rng: Rng,
  url: string,
  data: string,
): Promise<void> {
  const rounds = bySize(ctx.scale, { test: 4, reduced: 10, full: 40 });
  const A = { accept: BORG };
  const exists = async (name: string) => {
    const r = await tryRequest(`${url}/rb/${name}`, { headers: A });
    return r.status === 200 ? r.body : null;
  };
  const put = (name: string, body: Uint8Array) =>
    tryRequest(`${url}/rb/${name}`, { method: "POST", headers: A, body: copyBytes(body) });
  const move = (from: string, to: string) =>
    tryRequest(`${url}/rb/?cmd=move&current=${from}&new=${to}`, { method: "POST", headers: A });
  const remove = (name: string) =>
    tryRequest(`${url}/rb/${name}`, { method: "DELETE", headers: A });
  const checkStatuses = (label: string, statuses: number[], allowed: number[]) => {
    const bad = statuses.filter((s) => !allowed.includes(s));
    if (bad.length > 0) {
      tally.raceErrors++;
      note(tally, `${label}: unexpected statuses ${bad.join(",")}`);
    }
  };
  for (let round = 0; round < rounds; round++) {
    const content = randomBytes(rng.int(1, 200_000));
    const hash = sha256Hex(content);
    // one item, two destinations, deletes and stats, all at once
    const dir = `race/r${round}`;
    if ((await put(`${dir}/src`, content)).status !== 200) {
      tally.raceErrors++;
      continue;
    }
    const ops: { kind: string; run: () => Promise<number> }[] = [];
    for (let i = 0; i < 6; i++) {
      ops.push({
        kind: "move1",
        run: () => move(`${dir}/src`, `${dir}/dst1`).then((r) => r.status),
      });
    }
    for (let i = 0; i < 5; i++) {
      ops.push({
        kind: "move2",
        run: () => move(`${dir}/src`, `${dir}/dst2`).then((r) => r.status),
      });
    }
    for (let i = 0; i < 5; i++) {
      ops.push({ kind: "delete", run: () => remove(`${dir}/src`).then((r) => r.status) });
    }
    for (let i = 0; i < 4; i++) {
      ops.push({
        kind: "head",
        run: () =>
          tryRequest(`${url}/rb/${dir}/src`, { method: "HEAD", headers: A }).then((r) => r.status),
      });
    }
    for (let i = ops.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [ops[i], ops[j]] = [ops[j], ops[i]];
    }
    const statuses = await Promise.all(ops.map((op) => op.run()));
    checkStatuses(`race round ${round}`, statuses, [200, 404]);
    const winners = ops.filter((op, i) => op.kind !== "head" && statuses[i] === 200);
    const place = {
      src: await exists(`${dir}/src`),
      dst1: await exists(`${dir}/dst1`),
      dst2: await exists(`${dir}/dst2`),
    };
    const present = Object.entries(place).filter(([, v]) => v !== null);
    let consistent = winners.length === 1;
    if (consistent && winners[0].kind === "delete") consistent = present.length === 0;
    else if (consistent) {
      const target = winners[0].kind === "move1" ? "dst1" : "dst2";
      consistent = present.length === 1 && present[0][0] === target &&
        sha256Hex(present[0][1]!) === hash;
    }
    if (!consistent) {
      tally.raceErrors++;
      note(
        tally,
        `race round ${round}: winners ${winners.map((w) => w.kind).join(",") || "none"}, ` +
          `present ${present.map(([k]) => k).join(",") || "nowhere"}`,
      );
    }
    // ping-pong: a → b and b → a by many clients; the item must end in exactly one place
    const a = `${dir}/a`;
    const b = `${dir}/b`;
    await put(a, content);
    const pingPong = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const codes: number[] = [];
        for (let k = 0; k < 6; k++) {
          codes.push((await (i % 2 === 0 ? move(a, b) : move(b, a))).status);
        }
        return codes;
      }),
    );
    checkStatuses(`ping-pong round ${round}`, pingPong.flat(), [200, 404]);
    const ends = [await exists(a), await exists(b)].filter((v) => v !== null);
    if (ends.length !== 1 || sha256Hex(ends[0]!) !== hash) {
      tally.raceErrors++;
      note(tally, `ping-pong round ${round}: item in ${ends.length} places`);
    }
    // restic: concurrent uploads and deletes of one ID
    const id = sha256Hex(content);
    const path = `${url}/c/data/${id}`;
    const mixed = await Promise.all(
      Array.from(
        { length: 12 },
        (_, i) =>
          (i % 3 === 0
            ? tryRequest(path, { method: "DELETE" })
            : tryRequest(path, { method: "POST", body: copyBytes(content) })).then((r) => r.status),
      ),
    );
    checkStatuses(`restic upload/delete round ${round}`, mixed, [200]);
    const after = await tryRequest(path);
    if (!(after.status === 404 || (after.status === 200 && sha256Hex(after.body) === id))) {
      tally.raceErrors++;
      note(tally, `restic upload/delete round ${round}: GET ${after.status}`);
    }
    const left = [...Deno.readDirSync(`${data}/c/data/${id.slice(0, 2)}`)].filter((e) =>
      e.name.includes(TEMP_MARKER)
    );
    if (left.length > 0) {
      tally.raceErrors++;
      note(tally, `restic upload/delete round ${round}: ${left.length} temp files left`);
    }
  }
}

export async function concurrency(ctx: PartContext): Promise<Figure[]> {
  const tally: Tally = {
    exceeded: 0,
    samples: 0,
    uploads: 0,
    refusals: 0,
    duplicates: 0,
    raceErrors: 0,
    details: [],
  };
  const rng = new Rng(ctx.seed).fork(505);
  await quotaScenario(ctx, tally, rng);

  const data = `${ctx.tmp}/races`;
  await precreateLayout(data, { restic: ["c"], borg: ["cb"] });
  await Deno.writeTextFile(`${data}/c/config`, "config");
  const rounds = bySize(ctx.scale, { test: 4, reduced: 10, full: 40 });
  for (let round = 0; round < rounds; round++) {
    await Deno.mkdir(`${data}/rb/race/r${round}`, { recursive: true });
  }
  await Deno.mkdir(`${data}/rb/config`, { recursive: true });
  const dirBytesAtStart = (await measureDisk(data)).dirBytes;
  const server = await startServe([
    "--path",
    data,
    "--no-auth",
    "--max-size",
    String(10 ** 12),
    "--prometheus",
  ]);
  try {
    await identicalScenario(ctx, tally, rng, server.url, data);
    await raceScenario(ctx, tally, rng, server.url, data);
    await sleep(100);
    const disk = await measureDisk(data);
    const expected = disk.usage - disk.dirBytes + dirBytesAtStart;
    const reported = await metricsQuotaUsage(server.url);
    if (reported !== expected) {
      tally.raceErrors++;
      note(tally, `races: reported usage ${reported} ≠ disk ${expected}`);
    }
  } finally {
    await server.stop();
  }
  for (const line of tally.details) ctx.log(`concurrency: ${line}`);
  return [
    { name: "concurrency.uploads", value: tally.uploads, rule: INFO },
    { name: "concurrency.quota_refusals_507", value: tally.refusals, rule: INFO },
    { name: "concurrency.disk_samples", value: tally.samples, rule: INFO },
    { name: "concurrency.quota_exceeded_on_disk", value: tally.exceeded, rule: ZERO },
    { name: "concurrency.duplicate_commits", value: tally.duplicates, rule: ZERO },
    { name: "concurrency.race_errors", value: tally.raceErrors, rule: ZERO },
  ];
}
