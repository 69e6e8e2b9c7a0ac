// The reliability suite (scripts/reliability.ts, `deno task reliability`) at test size inside
// `deno test`: crash torture with 20 kills, real restic backups with the server killed, the whole
// bad-input corpus, 2000 fuzzed requests, the full authorization matrix and the concurrency
// scenarios. Every figure with a rule (a zero-figure, a bound) must pass. Slow clients and the
// soak run only in the script (they measure time and memory, which a shared test run distorts).

import { assert } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { PARTS } from "../scripts/reliability.ts";
import { describeRule, type Figure, passes } from "../scripts/reliability/common.ts";

const SEED = 20_251_123;

async function runPart(name: string): Promise<Figure[]> {
  const tmp = await Deno.makeTempDir({ prefix: `stowage-reliability-test-${name}-` });
  const lines: string[] = [];
  try {
    const figures = await PARTS[name]({
      scale: "test",
      seed: SEED,
      tmp,
      log: (line) => lines.push(line),
    });
    const failed = figures.filter((f) => !passes(f));
    assert(
      failed.length === 0,
      `${name} (seed ${SEED}):\n` +
        failed.map((f) => `  ${f.name}: ${f.value} (${describeRule(f.rule)})`).join("\n") +
        `\n${lines.slice(-40).join("\n")}`,
    );
    return figures;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

function figure(figures: Figure[], name: string): number {
  const found = figures.find((f) => f.name === name);
  assert(found !== undefined, `no figure ${name}`);
  return found.value;
}

// Child processes, sockets and HTTP clients are owned and closed by the parts themselves.
const options = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "reliability: crash torture (20 SIGKILLs under concurrent restic and borg uploads)",
  ...options,
  async fn() {
    const figures = await runPart("crash");
    assert(figure(figures, "crash.kills") >= 10, "fewer than 10 kills in the time budget");
    assert(figure(figures, "crash.acknowledged") > 0);
  },
});

Deno.test({
  name: "reliability: restic backups with the server killed, then check --read-data",
  ignore: peerMissing("restic"),
  ...options,
  async fn() {
    const figures = await runPart("crash-restic");
    assert(figure(figures, "crash.restic_kills") >= 1);
  },
});

Deno.test({
  name: "reliability: bad-input corpus on both protocols (raw sockets, fetch, CLI)",
  ...options,
  async fn() {
    const figures = await runPart("badinput");
    assert(figure(figures, "badinput.requests") >= 300);
  },
});

Deno.test({
  name: "reliability: seeded in-process fuzzing (2000 requests)",
  ...options,
  async fn() {
    const figures = await runPart("fuzz");
    assert(figure(figures, "fuzz.requests") >= 2000);
  },
});

Deno.test({
  name: "reliability: authorization matrix of both protocols and every mode",
  ...options,
  async fn() {
    const figures = await runPart("authz");
    assert(figure(figures, "authz.combinations") > 1000);
  },
});

Deno.test({
  name: "reliability: quota under 16 uploaders, identical uploads, move/delete races",
  ...options,
  async fn() {
    await runPart("concurrency");
  },
});
