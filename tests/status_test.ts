// `stowage status` (src/cli/status_command.ts), called in process: the table and --json report
// (protocol, size, objects, newest snapshot/archive, quota use), --max-age for cron (exit 1
// naming every stale repository), quota figures from the state file or from the scan, and
// --rescan writing a clean state only when that is safe.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { env, withTempDir } from "./_policy_fixtures.ts";
import { runStatusCommand, type StatusReport } from "../src/cli/status_command.ts";
import { QuotaScopes, readUsageState, STATE_FILE_NAME } from "../src/policy/quota_scopes.ts";

const NOW = Date.parse("2024-06-10T12:00:00Z");
const HOUR = 3_600_000;

async function write(path: string, bytes: number, mtime?: number): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, new Uint8Array(bytes));
  if (mtime !== undefined) await Deno.utime(path, new Date(mtime), new Date(mtime));
}

/** fresh (restic, snapshot 1 h ago), old (restic, 3 days), store (borg, 30 h), empty (restic). */
async function layout(dir: string): Promise<void> {
  await write(`${dir}/alice/fresh/config`, 100);
  await write(`${dir}/alice/fresh/data/00/0011`, 2000);
  await write(`${dir}/alice/fresh/snapshots/s1`, 50, NOW - 5 * HOUR);
  await write(`${dir}/alice/fresh/snapshots/s2`, 50, NOW - HOUR);
  await write(`${dir}/hosts/old/config`, 10);
  await write(`${dir}/hosts/old/snapshots/s1`, 40, NOW - 72 * HOUR);
  await Deno.mkdir(`${dir}/alice/store/config`, { recursive: true });
  await write(`${dir}/alice/store/archives/a1`, 30, NOW - 30 * HOUR);
  await write(`${dir}/alice/store/packs/00/p`, 970);
  await write(`${dir}/empty/config`, 5);
}

async function status(argv: string[], vars: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runStatusCommand(argv, {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    env: env(vars),
    now: () => NOW,
  });
  return { code, out, err };
}

Deno.test("status: table and JSON with protocol, size, objects, newest backup", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const table = await status(["--path", dir]);
    assertEquals(table.code, 0, table.err);
    const lines = table.out.trimEnd().split("\n");
    assertMatch(lines[0], /^REPOSITORY\s+PROTOCOL\s+SIZE\s+OBJECTS\s+NEWEST BACKUP\s+QUOTA$/);
    assertMatch(
      lines[1],
      /^alice\/fresh\s+restic\s+2\.1 KiB\s+4\s+2024-06-10 11:00Z \(60m ago\)$/,
    );
    assertMatch(lines[2], /^alice\/store\s+borg\s+1000 B\s+2\s+2024-06-09 06:00Z \(30h ago\)$/);
    assertMatch(lines[3], /^empty\s+restic\s+5 B\s+1\s+never$/);
    assertMatch(lines[4], /^hosts\/old\s+restic\s+50 B\s+2\s+2024-06-07 12:00Z \(3d ago\)$/);
    assertEquals(lines.length, 5);

    const json = await status(["--json"], { STOWAGE_PATH: dir });
    assertEquals(json.code, 0);
    const report = JSON.parse(json.out) as StatusReport;
    assertEquals(report.path, dir);
    assertEquals(report.quotas, null);
    assertEquals(report.repositories[0], {
      repo: "alice/fresh",
      protocol: "restic",
      bytes: 2200,
      objects: 4,
      newestBackup: "2024-06-10T11:00:00.000Z",
      newestBackupAgeSeconds: 3600,
    });
    assertEquals(report.stale, []);
  });
});

Deno.test("status: --max-age exits 1 naming every stale repository", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const cron = await status(["--path", dir, "--max-age", "2d"]);
    assertEquals(cron.code, 1);
    assertEquals(cron.err, "stowage: no backup newer than 2d in: empty, hosts/old\n");
    const strict = await status(["--path", dir, "--max-age", "36h", "--json"]);
    assertEquals(strict.code, 1);
    assertEquals(JSON.parse(strict.out).stale, ["empty", "hosts/old"]);
    await Deno.remove(`${dir}/empty`, { recursive: true });
    const ok = await status(["--path", dir, "--max-age", "4d"]);
    assertEquals([ok.code, ok.err], [0, ""]);
    const tight = await status(["--path", dir, "--max-age", "2h"]);
    assertEquals(tight.err, "stowage: no backup newer than 2h in: alice/store, hosts/old\n");
  });
});

Deno.test("status: usage errors exit 2, a missing directory 1", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], number, RegExp][] = [
      [[], 2, /which data directory\? use --path DIR or --config FILE/],
      [
        ["--path", dir, "--max-age", "soon"],
        2,
        /invalid --max-age "soon": expected e\.g\. 2d, 36h, 90m/,
      ],
      [["--path", dir, "extra"], 2, /unexpected argument: extra/],
      [["--path", `${dir}/missing`], 1, /cannot read .*missing/],
      [
        ["--config", `${dir}/none.json`],
        2,
        /config: cannot read .*none\.json: no such file or directory/,
      ],
    ];
    for (const [argv, code, pattern] of cases) {
      const run = await status(argv);
      assertEquals(run.code, code, `${argv.join(" ")}: ${run.err}`);
      assertMatch(run.err, pattern);
    }
  });
});

Deno.test("status: quota use from the config and the state file; --rescan", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const config = `${dir}/stowage.json`;
    const settings = {
      path: dir,
      grants: { alice: [{ pattern: "alice/*", mode: "all", quota: "10K" }] },
      quotas: { repos: { "alice/*": 4000 }, users: { alice: 8000 } },
    };
    await Deno.writeTextFile(config, JSON.stringify(settings));
    // no state file: measured now
    let report = JSON.parse((await status(["--config", config, "--json"])).out) as StatusReport;
    assertEquals(report.quotas!.source, "scan");
    assertEquals(report.quotas!.usage.user.alice.used, 3200);
    assertEquals(report.quotas!.usage.grant["alice:alice/*"], {
      used: 3200,
      reserved: 0,
      limit: 10_000,
    });
    assertEquals(report.repositories[0].quota, { used: 2200, limit: 4000 });
    assertEquals(report.repositories[2].quota, undefined); // empty: no repository quota

    // the server's state file (here: a clean shutdown with other figures) wins
    const scopes = await QuotaScopes.open({
      root: dir,
      grants: settings.grants as never,
      quotas: { repos: { "alice/*": 4000 }, users: { alice: 8000 } },
      privateRepos: false,
    });
    scopes.trackersFor(["alice", "fresh"]).forEach((t) => t.adjust(500));
    await scopes.close();
    const table = await status(["--config", config]);
    assertMatch(table.out, /alice\/fresh .* 2\.6 KiB \/ 3\.9 KiB \(67%\)/);
    assertMatch(table.out, /Quotas \(usage: state file saved .*, clean shutdown\):/);
    assertMatch(table.out, /user alice: 3\.6 KiB \/ 7\.8 KiB \(46%\)/);
    report = JSON.parse((await status(["--config", config, "--json"])).out) as StatusReport;
    assertEquals([report.quotas!.source, report.quotas!.clean], ["state", true]);
    assertEquals(report.quotas!.usage.user.alice.used, 3700);

    // --rescan: the file was clean, so the measured figures replace it
    const rescan = await status(["--config", config, "--rescan"]);
    assertMatch(rescan.err, new RegExp(`wrote the measured usage to .*${STATE_FILE_NAME}`));
    const state = (await readUsageState(`${dir}/${STATE_FILE_NAME}`))!;
    assertEquals([state.clean, state.user.alice], [true, 3200]);
    // a file marked unclean (server running or crashed) is left alone
    await Deno.writeTextFile(
      `${dir}/${STATE_FILE_NAME}`,
      JSON.stringify({ ...state, clean: false, user: { alice: 1 } }),
    );
    const left = await status(["--config", config, "--rescan"]);
    assertMatch(left.err, /is marked unclean: the next start measures anyway/);
    assertEquals((await readUsageState(`${dir}/${STATE_FILE_NAME}`))!.user.alice, 1);
    assert(left.out.includes("Quotas (usage: measured now)"));
  });
});
