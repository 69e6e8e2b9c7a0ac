// Grants (src/policy/grants.ts): pattern matching and "most specific wins", the restic and borg
// maps of each mode, --append-only / --private-repos combined with grants, and the whole matrix
// users × modes × operations through the real restic and borgstore handlers (in process, wired
// as src/server.ts wires them) → exact status codes; a denied operation changes nothing.

import { assert, assertEquals } from "./_assert.ts";
import { sha256Hex, treeSnapshot } from "./_server.ts";
import {
  basic,
  BORG_ACCEPT,
  type PolicyServer,
  policyServer,
  README_EXAMPLE,
  withTempDir,
} from "./_policy_fixtures.ts";
import { parseConfigText } from "../src/cli/config_file.ts";
import { APPEND_ONLY } from "../src/policy/access.ts";
import {
  borgStoreDepth,
  grantPolicy,
  type Grants,
  intersectMaps,
  MODE_NAMES,
  parsePattern,
  RESTIC_MODES,
} from "../src/policy/grants.ts";
import { BORG_MODES, isPermitted, type PermissionMap } from "../src/policy/permissions.ts";

const OPTIONS = { appendOnly: false, privateRepos: false, authEnabled: true };

function permissions(
  grants: Grants | null,
  user: string,
  repo: string,
  protocol: "restic" | "borg" = "restic",
  options = OPTIONS,
): PermissionMap | "none" {
  const access = grantPolicy(grants, options).resolve(
    user,
    repo === "" ? [] : repo.split("/"),
    protocol,
  );
  return access === null ? "none" : access.permissions;
}

Deno.test("grants: patterns match whole segments; the most specific grant wins", () => {
  const grants: Grants = {
    alice: [
      { pattern: "*", mode: "read-only" },
      { pattern: "alice/*", mode: "all" },
      { pattern: "alice/archive", mode: "append-only" },
      { pattern: "*/shared", mode: "write-only" },
      { pattern: "team", mode: "no-delete" },
    ],
    bob: [{ pattern: "bob/*", mode: "all" }],
    nobody: [],
  };
  const cases: [string, string, PermissionMap | "none"][] = [
    ["alice", "alice/laptop", null],
    ["alice", "alice/archive", RESTIC_MODES["append-only"]],
    ["alice", "bob/shared", RESTIC_MODES["write-only"]], // 1 wildcard, 2 segments beats `*`
    ["alice", "bob/laptop", RESTIC_MODES["read-only"]],
    ["alice", "team", RESTIC_MODES["no-delete"]],
    ["alice", "alice", RESTIC_MODES["read-only"]], // `alice/*` needs exactly two segments
    ["alice", "", RESTIC_MODES["read-only"]], // the lone `*` matches every repository
    ["bob", "bob/laptop", null],
    ["bob", "bob", "none"],
    ["bob", "alice/laptop", "none"],
    ["bob", "bob/a", null],
    ["nobody", "nobody/x", "none"],
    ["carol", "carol/x", "none"], // not in the grants: nothing
  ];
  for (const [user, repo, expected] of cases) {
    assertEquals(permissions(grants, user, repo), expected, `${user} ${repo}`);
  }
  assertEquals(parsePattern("*").segments, null);
  assertEquals(parsePattern("a/*").wildcards, 1);
});

Deno.test("grants: per-protocol modes; borg uses borg's modes, append-only = no-delete", () => {
  const grants: Grants = {
    laptop: [{ pattern: "alice/laptop", mode: { restic: "append-only" } }],
    mixed: [{ pattern: "m", mode: { restic: "read-only", borg: { "": "lr", "locks": "lrwD" } } }],
    u: MODE_NAMES.map((mode) => ({ pattern: `r/${mode}`, mode })),
  };
  assertEquals(permissions(grants, "laptop", "alice/laptop"), APPEND_ONLY.restic);
  assertEquals(permissions(grants, "laptop", "alice/laptop", "borg"), "none");
  assertEquals(permissions(grants, "mixed", "m", "borg"), { "": "lr", "locks": "lrwD" });
  const borg: Record<string, PermissionMap> = {
    "all": BORG_MODES["all"],
    "append-only": BORG_MODES["no-delete"],
    "no-delete": BORG_MODES["no-delete"],
    "write-only": BORG_MODES["write-only"],
    "read-only": BORG_MODES["read-only"],
  };
  for (const mode of MODE_NAMES) {
    assertEquals(permissions(grants, "u", `r/${mode}`, "borg"), borg[mode], mode);
    assertEquals(permissions(grants, "u", `r/${mode}`, "restic"), RESTIC_MODES[mode], mode);
  }
});

Deno.test("grants: --append-only caps every grant; --private-repos adds <user>/* for users without grants", () => {
  const grants: Grants = {
    admin: [{ pattern: "*", mode: "all" }],
    reader: [{ pattern: "*", mode: "read-only" }],
    none: [],
  };
  const capped = { ...OPTIONS, appendOnly: true };
  assertEquals(
    permissions(grants, "admin", "x/y", "restic", capped),
    intersectMaps(null, APPEND_ONLY.restic),
  );
  const admin = permissions(grants, "admin", "x/y", "restic", capped) as Record<string, string>;
  assert(isPermitted(admin, "data/ab/cd", "w") && !isPermitted(admin, "data/ab/cd", "D"));
  assert(isPermitted(admin, "locks/x", "D"));
  const reader = permissions(grants, "reader", "x/y", "restic", capped) as Record<string, string>;
  assert(!isPermitted(reader, "data/ab/cd", "w") && isPermitted(reader, "data/ab/cd", "r"));
  const borgAdmin = permissions(grants, "admin", "x/y", "borg", capped) as Record<string, string>;
  assert(!isPermitted(borgAdmin, "packs/00/x", "D") && isPermitted(borgAdmin, "packs/00/x", "w"));

  const priv = { ...OPTIONS, privateRepos: true };
  assertEquals(permissions(grants, "carol", "carol/laptop", "restic", priv), null);
  assertEquals(permissions(grants, "carol", "carol", "borg", priv), null);
  assertEquals(permissions(grants, "carol", "dave/laptop", "restic", priv), "none");
  assertEquals(permissions(grants, "none", "none/x", "restic", priv), "none"); // listed: own grants only
  assertEquals(permissions(grants, "admin", "dave/laptop", "restic", priv), null);
  // no grants section: flag semantics
  assertEquals(permissions(null, "carol", "dave/x"), null);
  assertEquals(permissions(null, "carol", "dave/x", "restic", priv), "none");
  assertEquals(permissions(null, "carol", "dave/x", "borg", capped), APPEND_ONLY.borg);
  // --private-repos has no effect without authentication
  assertEquals(permissions(null, "", "dave/x", "restic", { ...priv, authEnabled: false }), null);
});

Deno.test("grants: the README example resolves as documented", () => {
  const { grants } = parseConfigText(JSON.stringify(README_EXAMPLE), "/etc/stowage/config.json");
  assertEquals(permissions(grants, "admin", "alice/laptop"), null);
  assertEquals(permissions(grants, "alice", "alice/laptop"), null);
  assertEquals(permissions(grants, "alice", "shared/photos"), RESTIC_MODES["read-only"]);
  assertEquals(permissions(grants, "alice", "shared/music"), "none");
  assertEquals(permissions(grants, "web1", "hosts/web1"), APPEND_ONLY.restic);
  assertEquals(permissions(grants, "web1", "hosts/web2"), "none");
  assertEquals(permissions(grants, "laptop", "alice/laptop", "borg"), BORG_MODES["no-delete"]);
  assertEquals(permissions(grants, "auditor", "hosts/web2"), {
    "": "l",
    "snapshots": "lr",
    "locks": "lrwD",
  });
  assertEquals(borgStoreDepth(grants, false), 2);
  assertEquals(borgStoreDepth({ a: [{ pattern: "*", mode: "all" }] }, false), 1);
});

// ---- the matrix through the real handlers -------------------------------------------------

const MODE_USERS = ["u_all", "u_append", "u_nodelete", "u_write", "u_read"] as const;
const MATRIX_GRANTS: Grants = {
  admin: [{ pattern: "*", mode: "all" }],
  u_all: [{ pattern: "hosts/*", mode: "all" }],
  u_append: [{ pattern: "hosts/*", mode: "append-only" }],
  u_nodelete: [{ pattern: "hosts/*", mode: "no-delete" }],
  u_write: [{ pattern: "hosts/*", mode: "write-only" }],
  u_read: [{ pattern: "hosts/*", mode: "read-only" }],
  stranger: [{ pattern: "other/*", mode: "all" }],
};
const USERS = Object.fromEntries(
  [...Object.keys(MATRIX_GRANTS)].map((user) => [user, `pw-${user}`]),
);

function as(user: string, init: RequestInit = {}, extra: Record<string, string> = {}): RequestInit {
  return { ...init, headers: { ...basic(user, `pw-${user}`), ...extra, ...(init.headers ?? {}) } };
}

interface Op {
  name: string;
  run(server: PolicyServer, user: string): Promise<Response>;
}

function blob(text: string): { id: string; body: string } {
  return { id: sha256Hex(text), body: text };
}

const R = "/hosts/web1";
const SEED = {
  data: blob("data pack"),
  index: blob("index file"),
  snapshot: blob("snapshot file"),
  lock: blob("lock file"),
  key: blob("key file"),
};

async function seedRestic(server: PolicyServer): Promise<void> {
  const post = async (path: string, body?: string) => {
    const response = await server.fetch(path, as("admin", { method: "POST", body }));
    await response.body?.cancel();
    assertEquals(response.status, 200, path);
  };
  await post(`${R}/?create=true`);
  await post(`${R}/config`, "config bytes");
  await post(`${R}/data/${SEED.data.id}`, SEED.data.body);
  await post(`${R}/index/${SEED.index.id}`, SEED.index.body);
  await post(`${R}/snapshots/${SEED.snapshot.id}`, SEED.snapshot.body);
  await post(`${R}/locks/${SEED.lock.id}`, SEED.lock.body);
  await post(`${R}/keys/${SEED.key.id}`, SEED.key.body);
}

function resticOp(name: string, method: string, path: string, body?: string): Op {
  return {
    name,
    run: (server, user) =>
      server.fetch(
        `${R}${path}`,
        as(user, { method, body }, { accept: "application/vnd.x.restic.rest.v2" }),
      ),
  };
}

const NEW = {
  data: blob("new data"),
  index: blob("new index"),
  snap: blob("new snap"),
  lock: blob("new lock"),
};

// Expected status per op for u_all, u_append, u_nodelete, u_write, u_read (stranger: 401).
const RESTIC_MATRIX: [Op, number[]][] = [
  [resticOp("list data", "GET", "/data/"), [200, 200, 200, 200, 200]],
  [resticOp("list snapshots", "GET", "/snapshots/"), [200, 200, 200, 200, 200]],
  [resticOp("head config", "HEAD", "/config"), [200, 200, 200, 200, 200]],
  [resticOp("read config", "GET", "/config"), [200, 200, 200, 200, 200]],
  [resticOp("read key", "GET", `/keys/${SEED.key.id}`), [200, 200, 200, 200, 200]],
  [resticOp("read index", "GET", `/index/${SEED.index.id}`), [200, 200, 200, 200, 200]],
  [resticOp("read snapshot", "GET", `/snapshots/${SEED.snapshot.id}`), [200, 200, 200, 200, 200]],
  [resticOp("read data", "GET", `/data/${SEED.data.id}`), [200, 200, 200, 403, 200]],
  [resticOp("write data", "POST", `/data/${NEW.data.id}`, NEW.data.body), [
    200,
    200,
    200,
    200,
    403,
  ]],
  [resticOp("write index", "POST", `/index/${NEW.index.id}`, NEW.index.body), [
    200,
    200,
    200,
    200,
    403,
  ]],
  [resticOp("write snapshot", "POST", `/snapshots/${NEW.snap.id}`, NEW.snap.body), [
    200,
    200,
    200,
    200,
    403,
  ]],
  [resticOp("write lock", "POST", `/locks/${NEW.lock.id}`, NEW.lock.body), [
    200,
    200,
    200,
    200,
    200,
  ]],
  [resticOp("delete lock", "DELETE", `/locks/${SEED.lock.id}`), [200, 200, 200, 200, 200]],
  [resticOp("delete data", "DELETE", `/data/${SEED.data.id}`), [200, 403, 403, 403, 403]],
  [resticOp("delete index", "DELETE", `/index/${SEED.index.id}`), [200, 403, 403, 403, 403]],
  [resticOp("delete snapshot", "DELETE", `/snapshots/${SEED.snapshot.id}`), [
    200,
    403,
    403,
    403,
    403,
  ]],
  [resticOp("delete key", "DELETE", `/keys/${SEED.key.id}`), [200, 403, 403, 403, 403]],
  [resticOp("create repository", "POST", "/?create=true"), [200, 200, 200, 200, 403]],
  [resticOp("delete config", "DELETE", "/config"), [200, 403, 403, 403, 403]],
];

/** Runs every op as `user` on a fresh seeded tree; denied ops must leave the tree unchanged. */
async function runMatrix(
  seed: (server: PolicyServer) => Promise<void>,
  matrix: [Op, number[]][],
  users: readonly string[],
  column: (user: string, row: number[]) => number,
  options: { appendOnly?: boolean } = {},
): Promise<void> {
  for (const user of users) {
    await withTempDir(async (dir) => {
      const server = await policyServer(dir, { grants: MATRIX_GRANTS, users: USERS, ...options });
      await seed(server);
      for (const [op, row] of matrix) {
        const expected = column(user, row);
        const before = expected >= 400 ? await treeSnapshot(dir) : null;
        const response = await op.run(server, user);
        await response.body?.cancel();
        assertEquals(response.status, expected, `${user}: ${op.name}`);
        if (before !== null) {
          assertEquals(await treeSnapshot(dir), before, `${user}: ${op.name} changed the tree`);
        }
      }
    });
  }
}

Deno.test("grants matrix: restic, every mode × operation → exact status, denials change nothing", async () => {
  await runMatrix(
    seedRestic,
    RESTIC_MATRIX,
    [...MODE_USERS, "stranger"],
    (user, row) =>
      user === "stranger" ? 401 : row[MODE_USERS.indexOf(user as typeof MODE_USERS[number])],
  );
  // wrong password or no credentials: 401, nothing changes
  await withTempDir(async (dir) => {
    const server = await policyServer(dir, { grants: MATRIX_GRANTS, users: USERS });
    await seedRestic(server);
    const before = await treeSnapshot(dir);
    for (const headers of [{}, basic("u_all", "wrong")]) {
      const response = await server.fetch(`${R}/data/${SEED.data.id}`, {
        method: "DELETE",
        headers,
      });
      assertEquals(response.status, 401);
    }
    assertEquals(await treeSnapshot(dir), before);
  });
});

Deno.test("grants matrix: --append-only caps mode all to append-only (restic)", async () => {
  await runMatrix(
    seedRestic,
    RESTIC_MATRIX,
    ["u_all"],
    (_user, row) => row[1],
    { appendOnly: true },
  );
});

const S = "/hosts/b1";

function borgOp(name: string, method: string, path: string, body?: string): Op {
  const headers: Record<string, string> = { accept: BORG_ACCEPT };
  if (body !== undefined) headers["x-content-hash-sha256"] = sha256Hex(body);
  return { name, run: (server, user) => server.fetch(path, as(user, { method, body }, headers)) };
}

async function seedBorg(server: PolicyServer): Promise<void> {
  for (
    const op of [
      borgOp("create", "POST", `${S}/?cmd=create`),
      borgOp("manifest", "POST", `${S}/config/manifest`, "manifest v1"),
      borgOp("key", "POST", `${S}/keys/repokey`, "key"),
      borgOp("pack", "POST", `${S}/packs/00/p1`, "pack one"),
      borgOp("archive", "POST", `${S}/archives/a1`, "archive one"),
      borgOp("index", "POST", `${S}/index/i1`, "index one"),
      borgOp("lock", "POST", `${S}/locks/l1`, "lock one"),
    ]
  ) {
    const response = await op.run(server, "admin");
    await response.body?.cancel();
    assertEquals(response.status, 200, `seed ${op.name}`);
  }
}

// Expected status per op for u_all, u_append, u_nodelete, u_write, u_read (stranger: 403).
const BORG_MATRIX: [Op, number[]][] = [
  [borgOp("list packs", "GET", `${S}/packs/00/`), [200, 200, 200, 200, 200]],
  [borgOp("info pack", "HEAD", `${S}/packs/00/p1`), [200, 200, 200, 200, 200]],
  [borgOp("load key", "GET", `${S}/keys/repokey`), [200, 200, 200, 200, 200]],
  [borgOp("load pack", "GET", `${S}/packs/00/p1`), [200, 200, 200, 403, 200]],
  [borgOp("load archive", "GET", `${S}/archives/a1`), [200, 200, 200, 403, 200]],
  [borgOp("store pack", "POST", `${S}/packs/00/p2`, "pack two"), [200, 200, 200, 200, 403]],
  [borgOp("store archive", "POST", `${S}/archives/a2`, "archive two"), [200, 200, 200, 200, 403]],
  [borgOp("overwrite manifest", "POST", `${S}/config/manifest`, "manifest v2"), [
    200,
    200,
    200,
    200,
    403,
  ]],
  [borgOp("store lock", "POST", `${S}/locks/l2`, "lock two"), [200, 200, 200, 200, 200]],
  [borgOp("delete lock", "DELETE", `${S}/locks/l1`), [200, 200, 200, 200, 200]],
  [borgOp("delete pack", "DELETE", `${S}/packs/00/p1`), [200, 403, 403, 403, 403]],
  [borgOp("delete archive", "DELETE", `${S}/archives/a1`), [200, 403, 403, 403, 403]],
  [borgOp("delete index", "DELETE", `${S}/index/i1`), [200, 200, 200, 200, 403]],
  [borgOp("delete key", "DELETE", `${S}/keys/repokey`), [200, 403, 403, 403, 403]],
  [borgOp("create another store", "POST", "/hosts/b2/?cmd=create"), [200, 403, 403, 403, 403]],
  [borgOp("destroy", "DELETE", `${S}/?cmd=destroy`), [200, 403, 403, 403, 403]],
];

Deno.test("grants matrix: borg, every mode × operation → exact status, denials change nothing", async () => {
  await runMatrix(
    seedBorg,
    BORG_MATRIX,
    [...MODE_USERS, "stranger"],
    (user, row) =>
      user === "stranger" ? 403 : row[MODE_USERS.indexOf(user as typeof MODE_USERS[number])],
  );
});
