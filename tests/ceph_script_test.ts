// scripts/ceph-rgw.sh itself: a start that fails leaves no daemon of its cluster running.

import { CEPH_MISSING, SCRIPT } from "./_ceph.ts";
import { assert, assertEquals } from "./_assert.ts";

/** Pids of processes started for the cluster in `dir` (they inherit CEPH_CONF=dir/ceph.conf). */
function clusterProcesses(dir: string): number[] {
  const marker = `CEPH_CONF=${dir}/ceph.conf`;
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const environ = Deno.readTextFileSync(`/proc/${entry.name}/environ`).split("\0");
      if (environ.includes(marker)) pids.push(Number(entry.name));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

Deno.test({
  name: "ceph-rgw.sh: a start whose radosgw never answers prints the logs and stops its daemons",
  ignore: CEPH_MISSING,
  async fn() {
    // radosgw's port is taken by a listener that never answers
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    const dir = await Deno.makeTempDir({ prefix: "stowage-ceph-fail-" });
    try {
      const out = await new Deno.Command("bash", {
        args: [SCRIPT, "start", dir],
        env: { RGW_PORT: String((silent.addr as Deno.NetAddr).port), RGW_WAIT_S: "3" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert(out.code !== 0, "the start fails");
      assert(stderr.includes("radosgw did not answer"), stderr);
      assert(stderr.includes("==> "), `the log tails are printed:\n${stderr}`);
      assertEquals(clusterProcesses(dir), [], "no daemon of the failed cluster runs");
      assertEquals(await Deno.stat(dir).then(() => true, () => false), false, "dir removed");
    } finally {
      for (const pid of clusterProcesses(dir)) Deno.kill(pid, "SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      silent.close();
      await accepting.catch(() => {});
      for (const conn of held) conn.close();
    }
  },
});
