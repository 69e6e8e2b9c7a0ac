// Policies and quotas through the wired command line (needs main.ts to know `serve --config`,
// `check-config`, `user` and `status`): every invalid config refused with its exact message and
// exit status 2 by both `serve --config` and `check-config`; STOWAGE_* and flags over the file;
// `user` and `status` as commands; real restic with an append-only client credential and an
// admin credential on one repository; per-user and per-repository limits with concurrent
// uploaders, and usage carried over a clean restart through the state file.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { randomBytes, runStowage, sha256Hex, spawnStowage } from "./_server.ts";
import { BAD_CONFIGS, basic, README_EXAMPLE, withTempDir } from "./_policy_fixtures.ts";

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

Deno.test("cli: every invalid config → its exact message and exit 2 (serve and check-config)", async () => {
  await withTempDir(async (dir) => {
    await pool(BAD_CONFIGS.map((entry, i) => ({ entry, i })), 8, async ({ entry, i }) => {
      const [config, message] = entry;
      const file = `${dir}/bad${i}.json`;
      await Deno.writeTextFile(file, JSON.stringify(config));
      for (const args of [["serve", "--config", file, "--path", dir], ["check-config", file]]) {
        const run = await runStowage(args);
        assertEquals(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
        assert(run.stderr.includes(message), `${args[0]}: want ${message}\ngot ${run.stderr}`);
        assertEquals(run.stderr.trim().split("\n").length, 1, run.stderr);
      }
    });
  });
});

Deno.test("cli: check-config summary; STOWAGE_* and flags override the file", async () => {
  await withTempDir(async (dir) => {
    const good = `${dir}/stowage.json`;
    await Deno.writeTextFile(good, JSON.stringify(README_EXAMPLE));
    const check = await runStowage(["check-config", good]);
    assertEquals(check.code, 0, check.stderr);
    assertEquals(
      check.stdout,
      `config ${good}: ok (4 settings, 5 users with 6 grants, 2 repository quotas, 1 user quota)\n`,
    );
    const data = `${dir}/data`;
    await Deno.mkdir(data);
    const config = `${dir}/c.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({ path: "nowhere", listen: "127.0.0.1:1", "no-auth": true }),
    );
    // the environment beats the file (path, listen), a flag beats the environment (path)
    const server = await spawnStowage(["serve", "--config", config, "--path", data], {
      env: { STOWAGE_LISTEN: "127.0.0.1:0", STOWAGE_PATH: `${dir}/also-nowhere` },
    });
    try {
      assert(server.stderr.some((l) => l === `Data directory: ${data}`), server.stderr.join("\n"));
      const health = await fetch(`${server.url}/health`);
      assertEquals([health.status, await health.text()], [200, "ok\n"]);
    } finally {
      assertEquals(await server.stop(), 0);
    }
    const badEnv = await runStowage(["serve", "--config", config], {
      env: { STOWAGE_MAX_SIZE: "lots" },
    });
    assertEquals(badEnv.code, 2);
    assertMatch(badEnv.stderr, /invalid value "lots" for STOWAGE_MAX_SIZE: expected an integer/);
  });
});

Deno.test("cli: stowage user and stowage status as commands", async () => {
  await withTempDir(async (dir) => {
    const add = await runStowage([
      "user",
      "add",
      "alice",
      "--path",
      dir,
      "--password-stdin",
      "--cost",
      "4",
    ], {
      stdin: "pw\n",
    });
    assertEquals(add.code, 0, add.stderr);
    const list = await runStowage(["user", "list"], { env: { STOWAGE_PATH: dir } });
    assertEquals([list.code, list.stdout], [0, "alice\n"]);
    const noTty = await runStowage(["user", "add", "bob", "--path", dir]);
    assertEquals(noTty.code, 2);
    const missing = await runStowage(["user", "remove", "bob", "--path", dir]);
    assertEquals(missing.code, 1);

    await Deno.mkdir(`${dir}/alice/laptop/snapshots`, { recursive: true });
    await Deno.writeTextFile(`${dir}/alice/laptop/config`, "x");
    const status = await runStowage(["status", "--path", dir, "--json"]);
    assertEquals(status.code, 0, status.stderr);
    assertEquals(JSON.parse(status.stdout).repositories[0].repo, "alice/laptop");
    const cron = await runStowage(["status", "--path", dir, "--max-age", "2d"]);
    assertEquals(cron.code, 1);
    assertMatch(cron.stderr, /no backup newer than 2d in: alice\/laptop/);
  });
});

/** Runs restic on a REST URL; `interruptAfterMs` sends SIGINT then (restic retries refusals). */
async function restic(
  url: string,
  args: string[],
  interruptAfterMs?: number,
): Promise<{ code: number; out: string }> {
  const child = new Deno.Command("restic", {
    args: ["--no-cache", "-r", `rest:${url}`, ...args],
    env: { RESTIC_PASSWORD: "correct horse battery staple" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill(interruptAfterMs === undefined ? "SIGKILL" : "SIGINT");
    } catch { /* exited */ }
  }, interruptAfterMs ?? 120_000);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function snapshotCount(run: { code: number; out: string }): number {
  assertEquals(run.code, 0, run.out);
  return JSON.parse(run.out.slice(0, run.out.lastIndexOf("]") + 1)).length;
}

Deno.test({
  name: "cli: restic with an append-only client and an admin on one repository",
  ignore: peerMissing("restic"),
  async fn() {
    await withTempDir(async (dir) => {
      const data = `${dir}/data`;
      await Deno.mkdir(data);
      for (const [name, pw] of [["admin", "pw-admin"], ["client", "pw-client"]]) {
        const run = await runStowage([
          "user",
          "add",
          name,
          "--path",
          data,
          "--password-stdin",
          "--cost",
          "4",
        ], {
          stdin: pw,
        });
        assertEquals(run.code, 0, run.stderr);
      }
      const config = `${dir}/stowage.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify({
          path: "data",
          listen: "127.0.0.1:0",
          grants: {
            admin: [{ pattern: "*", mode: "all" }],
            client: [{ pattern: "hosts/web1", mode: "append-only" }],
          },
        }),
      );
      const server = await spawnStowage(["serve", "--config", config]);
      const at = (user: string) => `http://${user}:pw-${user}@127.0.0.1:${server.port}/hosts/web1/`;
      try {
        const source = `${dir}/source`;
        await Deno.mkdir(source);
        await Deno.writeFile(`${source}/a.bin`, randomBytes(200_000));
        const init = await restic(at("admin"), ["init"]);
        assertEquals(init.code, 0, init.out);
        const first = await restic(at("client"), ["backup", source]);
        assertEquals(first.code, 0, first.out);
        await Deno.writeFile(`${source}/b.bin`, randomBytes(100_000));
        const second = await restic(at("client"), ["backup", source]);
        assertEquals(second.code, 0, second.out);
        assertEquals(snapshotCount(await restic(at("client"), ["snapshots", "--json"])), 2);
        // the client cannot forget or prune: the snapshot delete is refused (restic would
        // retry for about 45 s, so it is interrupted once the refusal shows)
        const forget = await restic(at("client"), ["forget", "--keep-last", "1", "--prune"], 5000);
        assert(forget.code !== 0, forget.out);
        assertMatch(forget.out, /403/);
        assertEquals(snapshotCount(await restic(at("admin"), ["snapshots", "--json"])), 2);
        // a repository outside the client's grants is out of reach
        const other = await restic(
          `http://client:pw-client@127.0.0.1:${server.port}/hosts/web2/`,
          ["init"],
        );
        assert(other.code !== 0, other.out);
        assertMatch(other.out, /401|Unauthorized/);
        // the admin removes the interrupted client's lock if one is left, prunes, checks clean
        assertEquals((await restic(at("admin"), ["unlock"])).code, 0);
        const prune = await restic(at("admin"), ["forget", "--keep-last", "1", "--prune"]);
        assertEquals(prune.code, 0, prune.out);
        const check = await restic(at("admin"), ["check", "--read-data"]);
        assertEquals(check.code, 0, check.out);
        assertMatch(check.out, /no errors were found/);
        assertEquals(snapshotCount(await restic(at("client"), ["snapshots", "--json"])), 1);
      } finally {
        assertEquals(await server.stop(), 0);
      }
    });
  },
});

Deno.test("cli: per-user and per-repository limits with concurrent uploaders; clean restart keeps usage", async () => {
  await withTempDir(async (dir) => {
    const data = `${dir}/data`;
    await Deno.mkdir(data);
    for (const [name, pw] of [["admin", "pw-admin"], ["alice", "pw-alice"]]) {
      const run = await runStowage([
        "user",
        "add",
        name,
        "--path",
        data,
        "--password-stdin",
        "--cost",
        "4",
      ], {
        stdin: pw,
      });
      assertEquals(run.code, 0, run.stderr);
    }
    const config = `${dir}/stowage.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        path: "data",
        listen: "127.0.0.1:0",
        grants: {
          admin: [{ pattern: "*", mode: "all" }],
          alice: [{ pattern: "alice/*", mode: "all" }],
        },
        quotas: { repos: { "alice/b": 4000 }, users: { alice: 10_000 } },
      }),
    );
    const upload = async (url: string, repo: string, body: Uint8Array<ArrayBuffer>) => {
      const response = await fetch(`${url}/${repo}/data/${sha256Hex(body)}`, {
        method: "POST",
        body,
        headers: basic("alice", "pw-alice"),
      });
      await response.body?.cancel();
      return response.status;
    };
    let server = await spawnStowage(["serve", "--config", config]);
    try {
      for (const repo of ["alice/a", "alice/b"]) {
        const created = await fetch(`${server.url}/${repo}/?create=true`, {
          method: "POST",
          headers: basic("alice", "pw-alice"),
        });
        assertEquals(created.status, 200);
      }
      // 8 uploaders into each repository at once; alice/b stops at 4000, alice at 10000
      const jobs = Array.from({ length: 16 }, (_, i) => ({ repo: i % 2 ? "alice/a" : "alice/b" }));
      const results = await Promise.all(
        jobs.map(async (job) => ({
          ...job,
          status: await upload(server.url, job.repo, randomBytes(1000)),
        })),
      );
      const okIn = (repo: string) =>
        results.filter((r) => r.repo === repo && r.status === 200).length;
      assertEquals(okIn("alice/b"), 4, JSON.stringify(results));
      assertEquals(okIn("alice/a"), 6, JSON.stringify(results));
      assertEquals(results.filter((r) => r.status === 507).length, 6);
      assertEquals(await upload(server.url, "alice/a", randomBytes(1)), 507);
    } finally {
      assertEquals(await server.stop(), 0);
    }
    // clean shutdown: the state file carries the usage over, no rescan
    server = await spawnStowage(["serve", "--config", config]);
    try {
      await server.waitForLine(/^Quota usage loaded from .*\.stowage-usage\.json/);
      assertEquals(await upload(server.url, "alice/a", randomBytes(1)), 507);
      const status = await runStowage(["status", "--config", config, "--json"]);
      const report = JSON.parse(status.stdout);
      assertEquals(report.quotas.source, "state");
      assertEquals(report.quotas.clean, false); // the server is running
      assertEquals(report.quotas.usage.user.alice.used, 10_000);
      assertEquals(report.quotas.usage.repo["alice/b"], { used: 4000, reserved: 0, limit: 4000 });
    } finally {
      assertEquals(await server.stop(), 0);
    }
  });
});
