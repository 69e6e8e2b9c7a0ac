// The ticker (src/ticker.ts): repeats until stopped, can be stopped from its own tick, and a
// stopped ticker lets the process exit although its last timeout signal is still pending.

import { assert, assertEquals } from "./_assert.ts";
import { startTicker } from "../src/ticker.ts";

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("a ticker ticks again and again until it is stopped", async () => {
  let ticks = 0;
  let third: () => void = () => {};
  const thirdTick = new Promise<void>((resolve) => third = resolve);
  const ticker = startTicker(5, () => {
    ticks++;
    if (ticks === 3) third();
  });
  await thirdTick;
  ticker.stop();
  const atStop = ticks;
  await pause(60);
  assertEquals(ticks, atStop);
  ticker.stop();
});

Deno.test("a tick that stops its ticker is the last one", async () => {
  let ticks = 0;
  const ticker = startTicker(5, () => {
    ticks++;
    ticker.stop();
  });
  await pause(60);
  assertEquals(ticks, 1);
});

Deno.test("a stopped ticker does not keep the process alive", async () => {
  const script = `import { startTicker } from ${
    JSON.stringify(
      new URL("../src/ticker.ts", import.meta.url).href,
    )
  }; startTicker(600000, () => {}).stop(); console.log("stopped");`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  assert(output.success, new TextDecoder().decode(output.stderr));
  assertEquals(new TextDecoder().decode(output.stdout).trim(), "stopped");
});
