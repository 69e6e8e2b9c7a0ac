// /metrics of a running server: per-repository usage and newest-snapshot gauges measured at
// start and kept current by uploads and deletes, the quota gauges, and the whole exposition
// accepted by the real `promtool check metrics`.

import { assert, assertEquals } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { sha256Hex, spawnStowage } from "./_server.ts";

function gauge(text: string, name: string, repo?: string): number | null {
  const label = repo === undefined ? "" : `{repo="${repo}"}`;
  const line = text.split("\n").find((l) => l.startsWith(`${name}${label} `));
  return line === undefined ? null : Number(line.split(" ")[1]);
}

Deno.test({
  name: "metrics: repository gauges, quota gauges and promtool on live output",
  ignore: peerMissing("promtool"),
  async fn() {
    const dir = await Deno.makeTempDir();
    // an existing repository, as left by an earlier run
    await Deno.mkdir(`${dir}/old/snapshots`, { recursive: true });
    await Deno.mkdir(`${dir}/old/data/ab`, { recursive: true });
    await Deno.writeTextFile(`${dir}/old/config`, "cfg");
    await Deno.writeTextFile(`${dir}/old/data/ab/${"ab".repeat(32)}`, "x".repeat(1000));
    await Deno.writeTextFile(`${dir}/old/snapshots/${"cd".repeat(32)}`, "snap");
    await Deno.utime(`${dir}/old/snapshots/${"cd".repeat(32)}`, 1_700_000_000, 1_700_000_000);
    const server = await spawnStowage([
      "--path",
      dir,
      "--no-auth",
      "--prometheus",
      "--prometheus-no-auth",
      "--max-size",
      "100000000",
      "--listen",
      "127.0.0.1:0",
    ]);
    const scrape = async () => await (await fetch(`${server.url}/metrics`)).text();
    try {
      let text = "";
      for (
        let i = 0;
        i < 50 && gauge(text, "stowage_repository_usage_bytes", "old") === null;
        i++
      ) {
        await new Promise((r) => setTimeout(r, 100));
        text = await scrape();
      }
      assertEquals(gauge(text, "stowage_repository_usage_bytes", "old"), 1007);
      assertEquals(
        gauge(text, "stowage_repository_last_snapshot_timestamp_seconds", "old"),
        1_700_000_000,
      );
      assertEquals(gauge(text, "stowage_quota_limit_bytes"), 100000000);

      const snapshot = "new snapshot";
      const before = Date.now() / 1000;
      const upload = await fetch(`${server.url}/old/snapshots/${sha256Hex(snapshot)}`, {
        method: "POST",
        body: snapshot,
      });
      assertEquals(upload.status, 200);
      await upload.body?.cancel();
      text = await scrape();
      assertEquals(gauge(text, "stowage_repository_usage_bytes", "old"), 1007 + snapshot.length);
      assert(
        gauge(text, "stowage_repository_last_snapshot_timestamp_seconds", "old")! >= before - 1,
      );
      const removed = await fetch(`${server.url}/old/data/${"ab".repeat(32)}`, {
        method: "DELETE",
      });
      await removed.body?.cancel();
      text = await scrape();
      assertEquals(gauge(text, "stowage_repository_usage_bytes", "old"), 7 + snapshot.length);

      const check = new Deno.Command("promtool", {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = check.stdin.getWriter();
      await writer.write(new TextEncoder().encode(text));
      await writer.close();
      const result = await check.output();
      const report = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      assert(result.success, report);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
