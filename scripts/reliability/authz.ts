// Part 4, authorization matrix, extending the tables of tests/restic_policy_test.ts and
// tests/borgstore_permissions_test.ts to the real command line:
// - `stowage serve` with {--no-auth, htpasswd, --proxy-auth-username} × {plain, --append-only,
//   --private-repos, both} × every restic operation on /alice/repo/ × {owner alice, other user
//   bob, anonymous, wrong credentials}, and in the same servers every borg operation on a store
//   (/s/, or /alice/s/ with --private-repos) in several namespaces: append-only is borg's
//   no-delete mode there;
// - `stowage borgstore-server-rest` with each --permissions shortcut and borg mode plus a JSON
//   map × every operation in every namespace × {the user, anonymous, wrong password}.
// The expected outcome comes from a model written here from the specs (rest-server §7, borgstore
// §6.3/§6.4 with the verbatim maps of §6.6/§6.7), not from src/. A bypass is a request that the
// policy denies but that succeeded (2xx), or any denied request that changed the disk. A status
// different from the model's is reported separately (authz.unexpected_status).

import {
  basic,
  BORG,
  type Figure,
  htpasswdSha,
  INFO,
  type PartContext,
  pool,
  type Server,
  sha256Hex,
  snapshotTree,
  startBorgstoreRest,
  startServe,
  tryRequest,
  ZERO,
} from "./common.ts";

const ABC = sha256Hex("abc");
const FOO = sha256Hex("foobar");
const NEW = "reliability authz object";
const NEW_ID = sha256Hex(NEW);

type AuthMode = "none" | "htpasswd" | "proxy";
type PolicyMode = "plain" | "append-only" | "private" | "both";
type Who = "owner" | "other" | "anonymous" | "badcreds";

class Tally {
  combinations = 0;
  bypasses = 0;
  unexpected = 0;
  details: string[] = [];
}

/** Records one checked request. `denied`: the policy refuses it. */
function record(
  tally: Tally,
  label: string,
  denied: boolean,
  expected: number,
  got: number,
  changed: boolean,
  mutates: boolean,
): void {
  tally.combinations++;
  const success = got >= 200 && got < 300;
  if ((denied && success) || (denied && changed)) {
    tally.bypasses++;
    tally.details.push(`BYPASS ${label}: got ${got} (expected ${expected}), changed ${changed}`);
  } else if (got !== expected || (changed && (!success || !mutates))) {
    tally.unexpected++;
    tally.details.push(`${label}: got ${got}, expected ${expected}, changed the disk ${changed}`);
  }
}

// ---- restic ---------------------------------------------------------------------------------

interface ResticOp {
  name: string;
  method: string;
  path: string;
  body?: string;
  mutates: boolean;
  /** Status when the policy allows it. */
  ok: number;
  /** Refused by --append-only (a delete of anything but a lock). */
  appendOnlyDenied?: boolean;
}

const RESTIC_OPS: ResticOp[] = [
  { name: "create", method: "POST", path: "/alice/repo/?create=true", mutates: true, ok: 200 },
  {
    name: "create sub repo",
    method: "POST",
    path: "/alice/new/?create=true",
    mutates: true,
    ok: 200,
  },
  { name: "head config", method: "HEAD", path: "/alice/repo/config", mutates: false, ok: 200 },
  { name: "get config", method: "GET", path: "/alice/repo/config", mutates: false, ok: 200 },
  {
    name: "post config (exists)",
    method: "POST",
    path: "/alice/repo/config",
    body: "cfg2",
    mutates: true,
    ok: 403,
  },
  {
    name: "post config (new repo)",
    method: "POST",
    path: "/alice/fresh/config",
    body: "cfg",
    mutates: true,
    ok: 200,
  },
  {
    name: "delete config",
    method: "DELETE",
    path: "/alice/repo/config",
    mutates: true,
    ok: 200,
    appendOnlyDenied: true,
  },
  { name: "put config", method: "PUT", path: "/alice/repo/config", mutates: true, ok: 405 },
  { name: "list data", method: "GET", path: "/alice/repo/data/", mutates: false, ok: 200 },
  { name: "list keys", method: "GET", path: "/alice/repo/keys/", mutates: false, ok: 200 },
  { name: "head data", method: "HEAD", path: `/alice/repo/data/${FOO}`, mutates: false, ok: 200 },
  { name: "get data", method: "GET", path: `/alice/repo/data/${FOO}`, mutates: false, ok: 200 },
  { name: "get key", method: "GET", path: `/alice/repo/keys/${ABC}`, mutates: false, ok: 200 },
  {
    name: "post data (new)",
    method: "POST",
    path: `/alice/repo/data/${NEW_ID}`,
    body: NEW,
    mutates: true,
    ok: 200,
  },
  {
    name: "post snapshot (new)",
    method: "POST",
    path: `/alice/repo/snapshots/${NEW_ID}`,
    body: NEW,
    mutates: true,
    ok: 200,
  },
  {
    name: "post data (identical retry)",
    method: "POST",
    path: `/alice/repo/data/${FOO}`,
    body: "foobar",
    mutates: true,
    ok: 200,
  },
  {
    name: "post data (other bytes under an existing ID)",
    method: "POST",
    path: `/alice/repo/data/${FOO}`,
    body: "foobaz",
    mutates: true,
    ok: 403,
  },
  {
    name: "post data (wrong hash)",
    method: "POST",
    path: `/alice/repo/data/${NEW_ID}`,
    body: "not it",
    mutates: true,
    ok: 400,
  },
  {
    name: "delete data",
    method: "DELETE",
    path: `/alice/repo/data/${FOO}`,
    mutates: true,
    ok: 200,
    appendOnlyDenied: true,
  },
  {
    name: "delete key",
    method: "DELETE",
    path: `/alice/repo/keys/${ABC}`,
    mutates: true,
    ok: 200,
    appendOnlyDenied: true,
  },
  {
    name: "delete snapshot",
    method: "DELETE",
    path: `/alice/repo/snapshots/${ABC}`,
    mutates: true,
    ok: 200,
    appendOnlyDenied: true,
  },
  {
    name: "delete missing index",
    method: "DELETE",
    path: `/alice/repo/index/${NEW_ID}`,
    mutates: true,
    ok: 200,
    appendOnlyDenied: true,
  },
  {
    name: "delete lock",
    method: "DELETE",
    path: `/alice/repo/locks/${ABC}`,
    mutates: true,
    ok: 200,
  },
];

function resticExpected(auth: AuthMode, policy: PolicyMode, who: Who, op: ResticOp) {
  const authOn = auth !== "none";
  if (authOn && (who === "anonymous" || who === "badcreds")) return { status: 401, denied: true };
  const privateRepos = policy === "private" || policy === "both";
  if (privateRepos && authOn && who === "other") return { status: 401, denied: true };
  const appendOnly = policy === "append-only" || policy === "both";
  if (appendOnly && op.appendOnlyDenied) return { status: 403, denied: true };
  return { status: op.ok, denied: false };
}

function resticFixture(data: string): Promise<void> {
  // synchronous calls: fixtures are restored after every request that changed something
  for (const dir of ["repo", "new", "fresh"]) {
    try {
      Deno.removeSync(`${data}/alice/${dir}`, { recursive: true });
    } catch { /* absent */ }
  }
  const repo = `${data}/alice/repo`;
  Deno.mkdirSync(`${repo}/data/c3`, { recursive: true });
  Deno.mkdirSync(`${repo}/data/${NEW_ID.slice(0, 2)}`, { recursive: true });
  for (const type of ["index", "keys", "locks", "snapshots"]) {
    Deno.mkdirSync(`${repo}/${type}`, { recursive: true });
  }
  Deno.writeTextFileSync(`${repo}/config`, "cfg");
  Deno.writeTextFileSync(`${repo}/data/c3/${FOO}`, "foobar");
  Deno.writeTextFileSync(`${repo}/keys/${ABC}`, "abc");
  Deno.writeTextFileSync(`${repo}/snapshots/${ABC}`, "abc");
  Deno.writeTextFileSync(`${repo}/locks/${ABC}`, "abc");
  Deno.mkdirSync(`${data}/alice/fresh/keys`, { recursive: true });
  return Promise.resolve();
}

// ---- borg -----------------------------------------------------------------------------------

type Map_ = Record<string, string> | null;

/** Verbatim maps of borgstore spec §6.6 / §6.7. */
const BORG_MAPS: Record<string, Map_> = {
  "borgbackup-all": null,
  "borgbackup-no-delete": {
    "": "lr",
    archives: "lrw",
    cache: "lrwWD",
    config: "lrW",
    data: "lrw",
    keys: "lr",
    locks: "lrwD",
  },
  "borgbackup-write-only": {
    "": "l",
    archives: "lw",
    cache: "lrwWD",
    config: "lrW",
    data: "lw",
    keys: "lr",
    locks: "lrwD",
  },
  "borgbackup-read-only": { "": "lr", locks: "lrwD" },
  all: null,
  "no-delete": {
    "": "lr",
    archives: "lrw",
    cache: "lrwWD",
    config: "lrW",
    index: "lrwWD",
    keys: "lr",
    locks: "lrwD",
    packs: "lrw",
  },
  "write-only": {
    "": "l",
    archives: "lw",
    cache: "lrwWD",
    config: "lrW",
    index: "lrwWD",
    keys: "lr",
    locks: "lrwD",
    packs: "lw",
  },
  "read-only": { "": "lr", locks: "lrwD" },
};

/** A JSON map exercising deeper prefixes that remove rights (spec §6.3). */
const JSON_MAP = { "": "l", packs: "lrwWD", "packs/00/existing": "r", "index": "lrw", "x": "" };

/** Spec §6.3: the first candidate present decides; none present → denied. */
function permitted(map: Map_, name: string, anyOf: string): boolean {
  if (map === null || Object.keys(map).length === 0) return true;
  let candidate = name;
  while (true) {
    if (Object.hasOwn(map, candidate)) {
      return [...anyOf].some((letter) => map[candidate].includes(letter));
    }
    if (candidate === "") return false;
    const slash = candidate.lastIndexOf("/");
    candidate = slash < 0 ? "" : candidate.slice(0, slash);
  }
}

interface BorgOp {
  name: string;
  method: string;
  /** Path inside the store (starts with "/"). */
  path: string;
  body?: string;
  headers?: Record<string, string>;
  /** (name, any-of letters) that must all be granted. */
  needs: [string, string][];
  ok: number;
  mutates: boolean;
}

function borgOps(ns: string): BorgOp[] {
  const item = `${ns}/00/item`;
  const content = `content of ${ns}`;
  return [
    {
      name: `list ${ns}`,
      method: "GET",
      path: `/${ns}/00/`,
      needs: [[`${ns}/00`, "l"]],
      ok: 200,
      mutates: false,
    },
    {
      name: `load ${ns}`,
      method: "GET",
      path: `/${item}`,
      needs: [[item, "r"]],
      ok: 200,
      mutates: false,
    },
    {
      name: `load range ${ns}`,
      method: "GET",
      path: `/${item}`,
      headers: { range: "bytes=0-3" },
      needs: [[item, "r"]],
      ok: 206,
      mutates: false,
    },
    {
      name: `info ${ns}`,
      method: "HEAD",
      path: `/${item}`,
      needs: [[item, "lr"]],
      ok: 200,
      mutates: false,
    },
    {
      name: `info missing ${ns}`,
      method: "HEAD",
      path: `/${ns}/nope`,
      needs: [[`${ns}/nope`, "lr"]],
      ok: 404,
      mutates: false,
    },
    {
      name: `store new ${ns}`,
      method: "POST",
      path: `/${ns}/00/new`,
      body: "new",
      needs: [[`${ns}/00/new`, "wW"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `overwrite ${ns}`,
      method: "POST",
      path: `/${item}`,
      body: "changed",
      needs: [[item, "W"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `identical retry ${ns}`,
      method: "POST",
      path: `/${item}`,
      body: content,
      needs: [[item, "wW"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `store wrong hash ${ns}`,
      method: "POST",
      path: `/${ns}/00/new`,
      body: "new",
      headers: { "x-content-hash-sha256": sha256Hex("other") },
      // the reference compares the hash first (422 even where writing is denied); stowage checks
      // the permission first: a refusal either way
      needs: [[`${ns}/00/new`, "wW"]],
      ok: 422,
      mutates: true,
    },
    {
      name: `delete ${ns}`,
      method: "DELETE",
      path: `/${item}`,
      needs: [[item, "D"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `delete missing ${ns}`,
      method: "DELETE",
      path: `/${ns}/00/missing`,
      needs: [[`${ns}/00/missing`, "D"]],
      ok: 404,
      mutates: true,
    },
    {
      name: `soft delete ${ns}`,
      method: "POST",
      path: `/?cmd=move&current=${item}&new=${item}.del`,
      needs: [[item, "D"], [`${item}.del`, "wW"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `move onto existing ${ns}`,
      method: "POST",
      path: `/?cmd=move&current=${item}&new=${ns}/00/existing`,
      needs: [[item, "D"], [`${ns}/00/existing`, "W"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `hash ${ns}`,
      method: "POST",
      path: `/${item}?cmd=hash`,
      needs: [[item, "r"]],
      ok: 200,
      mutates: false,
    },
    {
      name: `mkdir ${ns}`,
      method: "POST",
      path: `/${ns}/00/sub?cmd=mkdir`,
      needs: [[`${ns}/00/sub`, "w"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `rmdir ${ns}`,
      method: "DELETE",
      path: `/${ns}/00/emptydir?cmd=rmdir`,
      needs: [[`${ns}/00/emptydir`, "wD"]],
      ok: 200,
      mutates: true,
    },
    {
      name: `defrag ${ns}`,
      method: "POST",
      path: `/?cmd=defrag&target=${ns}/00/merged`,
      body: `[["${item}", 0, 4]]`,
      needs: [[`${ns}/00/merged`, "W"], [item, "r"]],
      ok: 200,
      mutates: true,
    },
  ];
}

const ROOT_OPS: BorgOp[] = [
  {
    name: "create (exists)",
    method: "POST",
    path: "/?cmd=create",
    needs: [["", "wW"]],
    ok: 409,
    mutates: true,
  },
  { name: "info root", method: "HEAD", path: "/", needs: [["", "lr"]], ok: 200, mutates: false },
  { name: "list root", method: "GET", path: "/", needs: [["", "l"]], ok: 200, mutates: false },
  { name: "quota", method: "POST", path: "/?cmd=quota", needs: [], ok: 200, mutates: false },
  {
    name: "destroy",
    method: "DELETE",
    path: "/?cmd=destroy",
    needs: [["", "D"]],
    ok: 200,
    mutates: true,
  },
];

function borgFixture(root: string, namespaces: string[]): Promise<void> {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch { /* absent */ }
  Deno.mkdirSync(root, { recursive: true });
  for (const ns of namespaces) {
    Deno.mkdirSync(`${root}/${ns}/00/emptydir`, { recursive: true });
    Deno.writeTextFileSync(`${root}/${ns}/00/item`, `content of ${ns}`);
    Deno.writeTextFileSync(`${root}/${ns}/00/existing`, "old");
  }
  return Promise.resolve();
}

async function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<number> {
  const reply = await tryRequest(url, { method, headers, body });
  return reply.status;
}

/**
 * Runs one request against a fixture directory, compares with the model and restores the
 * fixture when the disk changed. The snapshot of the fixture is taken once per fixture.
 */
class Checker {
  #fixture: Map<string, string> | null = null;
  #contents = new Map<string, Uint8Array>();

  constructor(
    private readonly tally: Tally,
    private readonly root: string,
    private readonly reset: () => Promise<void>,
  ) {}

  async prepare(): Promise<void> {
    await this.reset();
    this.#fixture = await snapshotTree(this.root);
    this.#contents.clear();
    for (const [path, value] of this.#fixture) {
      if (value !== "dir") this.#contents.set(path, Deno.readFileSync(`${this.root}/${path}`));
    }
  }

  /** Puts back only what changed (much cheaper than rebuilding the fixture). */
  async #restore(after: Map<string, string>): Promise<void> {
    const fixture = this.#fixture!;
    try {
      const extra = [...after.keys()].filter((p) => !fixture.has(p)).sort();
      for (const path of extra) {
        try {
          Deno.removeSync(`${this.root}/${path}`, { recursive: true });
        } catch { /* removed with its parent */ }
      }
      for (const [path, value] of [...fixture].sort()) {
        if (after.get(path) === value) continue;
        if (value === "dir") Deno.mkdirSync(`${this.root}/${path}`, { recursive: true });
        else {
          Deno.mkdirSync(`${this.root}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
          Deno.writeFileSync(`${this.root}/${path}`, this.#contents.get(path)!);
        }
      }
      if (sameTree(fixture, await snapshotTree(this.root))) return;
    } catch { /* fall back to a full rebuild */ }
    await this.reset();
  }

  async check(
    label: string,
    run: () => Promise<number>,
    expected: { status: number; denied: boolean },
    mutates: boolean,
  ): Promise<void> {
    if (this.#fixture === null) await this.prepare();
    const got = await run();
    const after = await snapshotTree(this.root);
    const changed = !sameTree(this.#fixture!, after);
    record(this.tally, label, expected.denied, expected.status, got, changed, mutates);
    if (changed) await this.#restore(after);
  }
}

function sameTree(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...b].every(([path, value]) => a.get(path) === value);
}

// ---- the two server families ------------------------------------------------------------------

const MULTI_NAMESPACES = ["packs", "config", "locks", "index", "data"];

function multiStoreTasks(ctx: PartContext, tally: Tally): (() => Promise<void>)[] {
  const tasks: (() => Promise<void>)[] = [];
  for (const auth of ["none", "htpasswd", "proxy"] as AuthMode[]) {
    for (const policy of ["plain", "append-only", "private", "both"] as PolicyMode[]) {
      tasks.push(() => multiStoreServer(ctx, tally, auth, policy));
    }
  }
  return tasks;
}

async function multiStoreServer(
  ctx: PartContext,
  tally: Tally,
  auth: AuthMode,
  policy: PolicyMode,
): Promise<void> {
  {
    {
      const data = `${ctx.tmp}/serve-${auth}-${policy}`;
      await Deno.mkdir(data, { recursive: true });
      await Deno.writeTextFile(
        `${data}/.htpasswd`,
        `${htpasswdSha("alice", "pw-a")}\n${htpasswdSha("bob", "pw-b")}\n`,
      );
      const args = ["--path", data];
      if (auth === "none") args.push("--no-auth");
      if (auth === "proxy") args.push("--proxy-auth-username", "X-User");
      const appendOnly = policy === "append-only" || policy === "both";
      const privateRepos = policy === "private" || policy === "both";
      if (appendOnly) args.push("--append-only");
      if (privateRepos) args.push("--private-repos");
      const identity: Record<Who, Record<string, string>> = {
        owner: auth === "htpasswd"
          ? { authorization: basic("alice", "pw-a") }
          : auth === "proxy"
          ? { "x-user": "alice" }
          : {},
        other: auth === "htpasswd"
          ? { authorization: basic("bob", "pw-b") }
          : auth === "proxy"
          ? { "x-user": "bob" }
          : {},
        anonymous: {},
        badcreds: auth === "htpasswd"
          ? { authorization: basic("alice", "wrong") }
          : auth === "proxy"
          ? { "x-user": "" }
          : { authorization: "Basic !!!" },
      };
      const server = await startServe(args);
      try {
        const restic = new Checker(tally, `${data}/alice`, () => resticFixture(data));
        for (const op of RESTIC_OPS) {
          for (const who of ["owner", "other", "anonymous", "badcreds"] as Who[]) {
            await restic.check(
              `serve ${auth}/${policy} restic ${op.name} as ${who}`,
              () => send(server.url + op.path, op.method, identity[who], op.body),
              resticExpected(auth, policy, who, op),
              op.mutates,
            );
          }
        }
        // borg stores in the same server: append-only is borg's no-delete mode
        // --private-repos applies only with authentication (then stores are /<user>/<store>/)
        const authOn = auth !== "none";
        const storePath = privateRepos && authOn ? "alice/s" : "s";
        const storeRoot = `${data}/${storePath}`;
        const map = appendOnly ? BORG_MAPS["no-delete"] : null;
        const borg = new Checker(tally, storeRoot, () => borgFixture(storeRoot, MULTI_NAMESPACES));
        const allOps = [...MULTI_NAMESPACES.flatMap(borgOps), ...ROOT_OPS];
        // other users and the unauthenticated: one namespace and the root suffice
        const someOps = [...borgOps("packs"), ...ROOT_OPS];
        for (const who of ["owner", "other", "anonymous", "badcreds"] as Who[]) {
          for (const op of who === "owner" ? allOps : someOps) {
            let expected: { status: number; denied: boolean };
            if (authOn && (who === "anonymous" || who === "badcreds")) {
              expected = { status: 401, denied: true };
            } else if (privateRepos && authOn && who === "other") {
              expected = { status: 403, denied: true };
            } else {
              const ok = op.needs.every(([name, anyOf]) => permitted(map, name, anyOf));
              expected = ok ? { status: op.ok, denied: false } : { status: 403, denied: true };
            }
            await borg.check(
              `serve ${auth}/${policy} borg ${op.name} as ${who}`,
              () =>
                send(`${server.url}/${storePath}${op.path}`, op.method, {
                  accept: BORG,
                  ...identity[who],
                  ...op.headers,
                }, op.body),
              expected,
              op.mutates,
            );
          }
        }
      } finally {
        await server.stop();
      }
    }
  }
}

const PERSONALITY_NAMESPACES = [
  "config",
  "keys",
  "locks",
  "archives",
  "data",
  "packs",
  "index",
  "cache",
  "other",
];

function personalityTasks(ctx: PartContext, tally: Tally): (() => Promise<void>)[] {
  const modes: [string, string, Map_][] = [
    ...Object.entries(BORG_MAPS).map(([name, map]) => [name, name, map] as [string, string, Map_]),
    ["json map", JSON.stringify(JSON_MAP), JSON_MAP],
  ];
  return modes.map(([label, value, map]) => () => personalityServer(ctx, tally, label, value, map));
}

async function personalityServer(
  ctx: PartContext,
  tally: Tally,
  label: string,
  value: string,
  map: Map_,
): Promise<void> {
  const passwordFile = `${ctx.tmp}/password`;
  {
    const root = `${ctx.tmp}/store-${label.replace(/\W+/g, "-")}`;
    const checker = new Checker(tally, root, () => borgFixture(root, PERSONALITY_NAMESPACES));
    await checker.prepare();
    const server: Server = await startBorgstoreRest([
      "--backend",
      `file://${root}`,
      "--permissions",
      value,
      "--username",
      "borg",
      "--password-file",
      passwordFile,
    ]);
    const identities: [Who, Record<string, string>][] = [
      ["owner", { authorization: basic("borg", "s3cret") }],
      ["anonymous", {}],
      ["badcreds", { authorization: basic("borg", "wrong") }],
    ];
    try {
      for (const [who, headers] of identities) {
        // the unauthenticated are refused everywhere: one namespace and the root suffice
        const namespaces = who === "owner" ? PERSONALITY_NAMESPACES : ["packs"];
        const ops = [...namespaces.flatMap(borgOps), ...ROOT_OPS];
        for (const op of ops) {
          let expected: { status: number; denied: boolean };
          if (who !== "owner") expected = { status: 401, denied: true };
          else {
            const ok = op.needs.every(([name, anyOf]) => permitted(map, name, anyOf));
            expected = ok ? { status: op.ok, denied: false } : { status: 403, denied: true };
          }
          await checker.check(
            `borgstore-server-rest ${label} ${op.name} as ${who}`,
            () =>
              send(
                server.url + op.path,
                op.method,
                { accept: BORG, ...headers, ...op.headers },
                op.body,
              ),
            expected,
            op.mutates,
          );
        }
      }
    } finally {
      await server.stop();
    }
  }
}

export async function authz(ctx: PartContext): Promise<Figure[]> {
  const tally = new Tally();
  await Deno.writeTextFile(`${ctx.tmp}/password`, "s3cret\n");
  // three servers at a time: most of the time goes to fsync and fixture restores
  await pool(3, [...multiStoreTasks(ctx, tally), ...personalityTasks(ctx, tally)]);
  for (const line of tally.details.slice(0, 80)) ctx.log(`authz: ${line}`);
  return [
    { name: "authz.combinations", value: tally.combinations, rule: INFO },
    { name: "authz.bypasses", value: tally.bypasses, rule: ZERO },
    { name: "authz.unexpected_status", value: tally.unexpected, rule: ZERO },
  ];
}
