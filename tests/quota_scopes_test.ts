// Quota scopes (src/policy/quota_scopes.ts): initial usage from walking the repositories, which
// trackers apply to a repository, the state file (clean marker, unclean while running, rescan
// when the scope definitions changed), and exact enforcement of per-repository, per-user and
// per-grant limits with concurrent uploads through the real restic and borgstore handlers.

import { assert, assertEquals } from "./_assert.ts";
import { randomBytes, sha256Hex } from "./_server.ts";
import { basic, BORG_ACCEPT, policyServer, withTempDir } from "./_policy_fixtures.ts";
import type { Grants } from "../src/policy/grants.ts";
import { QuotaScopes, readUsageState, STATE_FILE_NAME } from "../src/policy/quota_scopes.ts";
import { scanRepositories } from "../src/policy/repo_scan.ts";

async function write(path: string, bytes: number, mtime?: Date): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, new Uint8Array(bytes));
  if (mtime) await Deno.utime(path, mtime, mtime);
}

/** alice/laptop (restic, 1000 B), alice/borg (borg, 300 B), bob/pc (restic, 50 B). */
async function layout(dir: string): Promise<void> {
  await write(`${dir}/alice/laptop/config`, 100);
  await write(`${dir}/alice/laptop/data/ab/abcd`, 800);
  await write(`${dir}/alice/laptop/snapshots/s1`, 100, new Date("2024-01-02T00:00:00Z"));
  await write(`${dir}/alice/laptop/data/ab/.abcd.x1.stowage-tmp`, 5000); // unfinished upload
  await Deno.mkdir(`${dir}/alice/borg/config`, { recursive: true });
  await write(`${dir}/alice/borg/packs/00/p1`, 250);
  await write(`${dir}/alice/borg/archives/a1`, 50, new Date("2024-03-01T00:00:00Z"));
  await write(`${dir}/alice/borg/quota.hid`, 3);
  await write(`${dir}/bob/pc/config`, 50);
  await write(`${dir}/.htpasswd`, 10);
  await Deno.mkdir(`${dir}/empty/dir`, { recursive: true });
}

const GRANTS: Grants = {
  admin: [{ pattern: "*", mode: "all" }],
  alice: [
    { pattern: "alice/*", mode: "all", quota: 5000 },
    { pattern: "bob/pc", mode: "read-only" },
  ],
  bob: [{ pattern: "bob/*", mode: "append-only" }],
};

Deno.test("scan: restic repositories and borg stores, sizes, objects, newest backup", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const repos = await scanRepositories(dir);
    assertEquals(repos.map((r) => [r.key, r.protocol, r.bytes, r.objects, r.newestBackup]), [
      ["alice/borg", "borg", 300, 2, Date.parse("2024-03-01T00:00:00Z")],
      ["alice/laptop", "restic", 1000, 3, Date.parse("2024-01-02T00:00:00Z")],
      ["bob/pc", "restic", 50, 1, null],
    ]);
    assertEquals(await scanRepositories(`${dir}/missing`), []);
  });
});

Deno.test("scopes: usage measured per repository, user and grant; trackers tightest first", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const scopes = await QuotaScopes.open({
      root: dir,
      grants: GRANTS,
      quotas: {
        repos: { "alice/*": 2000, "alice/laptop": 1500 },
        users: { alice: 4000, bob: 900 },
      },
      privateRepos: false,
      maxSize: 1_000_000,
    });
    assertEquals(scopes.source, "scan");
    const usage = scopes.usageSnapshot();
    assertEquals(usage.repo, {
      "alice/borg": { used: 300, reserved: 0, limit: 2000 },
      "alice/laptop": { used: 1000, reserved: 0, limit: 1500 },
    });
    // alice's user scope: her writable grants (alice/*), not the read-only bob/pc
    assertEquals(usage.user.alice, { used: 1300, reserved: 0, limit: 4000 });
    assertEquals(usage.user.bob, { used: 50, reserved: 0, limit: 900 });
    assertEquals(usage.grant, { "alice:alice/*": { used: 1300, reserved: 0, limit: 5000 } });
    assert(usage.global!.used >= 1350, JSON.stringify(usage.global));
    assertEquals(scopes.trackersFor(["alice", "laptop"]).map((t) => t.limit), [1500, 4000, 5000]);
    assertEquals(scopes.trackersFor(["bob", "pc"]).map((t) => t.limit), [900]);
    assertEquals(scopes.trackersFor(["carol", "x"]).map((t) => t.limit), []);
    // a write by anyone into alice/laptop counts in all of her scopes
    for (const tracker of scopes.trackersFor(["alice", "laptop"])) tracker.adjust(100);
    assertEquals(scopes.usageSnapshot().user.alice.used, 1400);
    assertEquals(scopes.usageSnapshot().repo["alice/laptop"].used, 1100);
    await scopes.close();
  });
});

Deno.test("state file: clean shutdown is reused, unclean while running, rescan on change", async () => {
  await withTempDir(async (dir) => {
    await layout(dir);
    const options = {
      root: dir,
      grants: GRANTS,
      quotas: { repos: { "alice/laptop": 1500 }, users: { alice: 4000 } },
      privateRepos: false,
    };
    const file = `${dir}/${STATE_FILE_NAME}`;
    const first = await QuotaScopes.open(options);
    assertEquals((await readUsageState(file))?.clean, false); // marked unclean while running
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    first.trackersFor(["alice", "laptop"]).forEach((t) => t.adjust(7));
    await first.close();
    const saved = (await readUsageState(file))!;
    assertEquals([saved.clean, saved.repo, saved.user], [true, { "alice/laptop": 1007 }, {
      alice: 1307,
    }]);

    // a change behind the server's back is not seen after a clean shutdown...
    await write(`${dir}/alice/laptop/data/cd/cdef`, 10_000);
    const second = await QuotaScopes.open(options);
    assertEquals(second.source, "state");
    assertEquals(second.usageSnapshot().user.alice.used, 1307);
    // ...and the crash of `second` (no close) forces a rescan, which sees it
    const third = await QuotaScopes.open(options);
    assertEquals(third.source, "scan");
    assertEquals(third.usageSnapshot().user.alice.used, 11_300);
    await third.close();
    // changed scope definitions (a new user quota) → rescan; a changed limit alone → reuse
    const fourth = await QuotaScopes.open({
      ...options,
      quotas: { ...options.quotas, users: { alice: 1, bob: 5 } },
    });
    assertEquals(fourth.source, "scan");
    await fourth.close();
    const fifth = await QuotaScopes.open({
      ...options,
      quotas: { ...options.quotas, users: { alice: 99, bob: 5 } },
    });
    assertEquals(fifth.source, "state");
    await fifth.close();
    // rescan on request
    const sixth = await QuotaScopes.open({ ...options, rescan: true });
    assertEquals(sixth.source, "scan");
    await sixth.close();
  });
});

const USERS = { admin: "pw-admin", alice: "pw-alice", bob: "pw-bob" };

async function resticUpload(
  server: Awaited<ReturnType<typeof policyServer>>,
  user: string,
  repo: string,
  body: Uint8Array<ArrayBuffer>,
): Promise<number> {
  const response = await server.fetch(`/${repo}/data/${sha256Hex(body)}`, {
    method: "POST",
    body,
    headers: basic(user, `pw-${user}`),
  });
  await response.body?.cancel();
  return response.status;
}

async function createRepo(server: Awaited<ReturnType<typeof policyServer>>, repo: string) {
  const response = await server.fetch(`/${repo}/?create=true`, {
    method: "POST",
    headers: basic("admin", "pw-admin"),
  });
  assertEquals(response.status, 200);
}

Deno.test("enforcement: a user quota over two repositories, concurrent uploads, exact", async () => {
  await withTempDir(async (dir) => {
    const server = await policyServer(dir, {
      grants: { ...GRANTS, alice: [{ pattern: "alice/*", mode: "all" }] }, // no grant quota
      users: USERS,
      quotas: { repos: {}, users: { alice: 10_000 } },
    });
    await createRepo(server, "alice/a");
    await createRepo(server, "alice/b");
    const bodies = Array.from({ length: 16 }, () => randomBytes(1000));
    const statuses = await Promise.all(
      bodies.map((body, i) => resticUpload(server, "alice", i % 2 ? "alice/a" : "alice/b", body)),
    );
    assertEquals(statuses.filter((s) => s === 200).length, 10, statuses.join(","));
    assertEquals(statuses.filter((s) => s === 507).length, 6, statuses.join(","));
    const usage = server.scopes!.usageSnapshot().user.alice;
    assertEquals([usage.used, usage.reserved], [10_000, 0]);
    const onDisk = (await scanRepositories(dir)).reduce((n, r) => n + r.bytes, 0);
    assertEquals(onDisk, 10_000);
    // the admin's write into alice's repository counts against alice's quota too
    assertEquals(await resticUpload(server, "admin", "alice/a", randomBytes(1)), 507);
    // a delete gives room back (of an upload that was stored: which ten won the race varies)
    const kept = statuses.indexOf(200);
    const keptRepo = kept % 2 ? "alice/a" : "alice/b";
    const del = await server.fetch(`/${keptRepo}/data/${sha256Hex(bodies[kept])}`, {
      method: "DELETE",
      headers: basic("alice", "pw-alice"),
    });
    assertEquals(del.status, 200);
    assertEquals(await resticUpload(server, "alice", "alice/b", randomBytes(1000)), 200);
  });
});

Deno.test("enforcement: per-repository and per-grant limits, restic and borg together", async () => {
  await withTempDir(async (dir) => {
    const server = await policyServer(dir, {
      grants: GRANTS, // alice/* has a grant quota of 5000 bytes in total
      users: USERS,
      quotas: { repos: { "alice/*": 3000 }, users: {} },
    });
    await createRepo(server, "alice/r");
    const create = await server.fetch("/alice/s/?cmd=create", {
      method: "POST",
      headers: { ...basic("alice", "pw-alice"), accept: BORG_ACCEPT },
    });
    assertEquals(create.status, 200);
    const borgStore = async (name: string, body: Uint8Array<ArrayBuffer>) => {
      const response = await server.fetch(`/alice/s/packs/00/${name}`, {
        method: "POST",
        body,
        headers: {
          ...basic("alice", "pw-alice"),
          accept: BORG_ACCEPT,
          "x-content-hash-sha256": sha256Hex(body),
        },
      });
      await response.body?.cancel();
      return response.status;
    };
    // repo limit 3000 each: the restic repository takes 3 × 1000 and refuses the 4th
    const restic = await Promise.all(
      Array.from({ length: 4 }, () => resticUpload(server, "alice", "alice/r", randomBytes(1000))),
    );
    assertEquals(restic.sort(), [200, 200, 200, 507]);
    // grant quota 5000 over alice/*: 3000 used, so the borg store gets 2000 more, not 3000
    const borg = await Promise.all(
      ["p1", "p2", "p3"].map((name) => borgStore(name, randomBytes(1000))),
    );
    assertEquals(borg.sort(), [200, 200, 507]);
    const usage = server.scopes!.usageSnapshot();
    assertEquals(usage.grant["alice:alice/*"].used, 5000);
    assertEquals(usage.repo["alice/r"].used, 3000);
    assertEquals(usage.repo["alice/s"].used, 2000);
  });
});
