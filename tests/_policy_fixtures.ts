// Shared fixtures of the policy tests (config file, grants, quotas, user and status commands):
// the README's worked example config, the catalogue of invalid configs with their exact
// messages, a fake environment, Basic auth headers, and a bounded helper for temp directories.

import { parseBasicAuth } from "../src/http/auth.ts";
import { composeHandler } from "../src/handler.ts";
import type { Logger } from "../src/log.ts";
import { borgStoreDepth, grantPolicy, type Grants } from "../src/policy/grants.ts";
import { QuotaScopes, type QuotaSettings } from "../src/policy/quota_scopes.ts";
import { FsProvider } from "../src/storage/fs.ts";

/** The worked example of the README ("Policies and quotas"). */
export const README_EXAMPLE = {
  "path": "/srv/backup",
  "listen": ":8000",
  "htpasswd-file": "/etc/stowage/htpasswd",
  "max-size": "2T",
  "grants": {
    "admin": [{ "pattern": "*", "mode": "all" }],
    "alice": [
      { "pattern": "alice/*", "mode": "all", "quota": "500G" },
      { "pattern": "shared/photos", "mode": "read-only" },
    ],
    "web1": [{ "pattern": "hosts/web1", "mode": "append-only" }],
    "laptop": [{
      "pattern": "alice/laptop",
      "mode": { "restic": "append-only", "borg": "no-delete" },
    }],
    "auditor": [{ "pattern": "hosts/*", "mode": { "": "l", "snapshots": "lr", "locks": "lrwD" } }],
  },
  "quotas": {
    "repos": { "hosts/*": "100G", "shared/photos": "1T" },
    "users": { "alice": "600G" },
  },
};

export function env(vars: Record<string, string> = {}) {
  return { get: (name: string) => vars[name] };
}

/** [config, exact message] for each kind of mistake. */
export const BAD_CONFIGS: [unknown, string][] = [
  [{ "lisen": ":8000" }, "config: lisen: unknown key"],
  [{ "help": true }, "config: help: unknown key"],
  [{ "listen": 8000 }, "config: listen: expected a string"],
  [{ "append-only": "yes" }, "config: append-only: expected true or false"],
  [{ "max-size": "lots" }, 'config: max-size: expected a positive integer or a size like "500G"'],
  [{ "max-size": -5 }, 'config: max-size: expected a positive integer or a size like "500G"'],
  [[], "config: expected a JSON object at the top level"],
  [{ "grants": [] }, "config: grants: expected an object mapping user names to lists of grants"],
  [
    { "grants": { "alice": { "pattern": "*" } } },
    "config: grants.alice: expected a list of grants",
  ],
  [{ "grants": { "bad user": [] } }, 'config: grants["bad user"]: invalid user name'],
  [
    { "grants": { "alice": ["alice/*"] } },
    'config: grants.alice[0]: expected an object with "pattern" and "mode"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": "all", "perm": "x" }] } },
    "config: grants.alice[0].perm: unknown key",
  ],
  [{ "grants": { "alice": [{ "mode": "all" }] } }, "config: grants.alice[0].pattern: missing"],
  [{ "grants": { "alice": [{ "pattern": "a" }] } }, "config: grants.alice[0].mode: missing"],
  [
    {
      "grants": {
        "alice": [{ "pattern": "alice/*", "mode": "all" }, { "pattern": "x", "mode": "al" }],
      },
    },
    'config: grants.alice[1].mode: unknown mode "al"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": { "": "lr", "locks": "lrx" } }] } },
    'config: grants.alice[0].mode.locks: letters "lrx" outside lrwWD',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": {} }] } },
    'config: grants.alice[0].mode: empty map (use "all", or list prefixes)',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": { "restic": "x" } }] } },
    'config: grants.alice[0].mode.restic: unknown mode "x"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": { "/data": "lr" } }] } },
    'config: grants.alice[0].mode["/data"]: invalid prefix "/data"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": "all", "quota": "5X" }] } },
    'config: grants.alice[0].quota: expected a positive integer or a size like "500G"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a", "mode": "all", "quota": 0 }] } },
    'config: grants.alice[0].quota: expected a positive integer or a size like "500G"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "alice//x", "mode": "all" }] } },
    'config: grants.alice[0].pattern: empty segment in "alice//x"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "/alice", "mode": "all" }] } },
    'config: grants.alice[0].pattern: empty segment in "/alice"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "../x", "mode": "all" }] } },
    'config: grants.alice[0].pattern: ".." segment in "../x"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "a/b/c", "mode": "all" }] } },
    'config: grants.alice[0].pattern: more than 2 segments in "a/b/c"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "al*", "mode": "all" }] } },
    'config: grants.alice[0].pattern: "*" must be a whole segment in "al*"',
  ],
  [
    { "grants": { "alice": [{ "pattern": "", "mode": "all" }] } },
    "config: grants.alice[0].pattern: empty pattern",
  ],
  [
    {
      "grants": {
        "alice": [
          { "pattern": "alice/*", "mode": "all" },
          { "pattern": "shared", "mode": "all" },
          { "pattern": "alice/*", "mode": "read-only" },
        ],
      },
    },
    'config: grants.alice[2].pattern: duplicate of grants.alice[0] ("alice/*")',
  ],
  [
    {
      "grants": {
        "alice": [{ "pattern": "alice/*", "mode": "all" }, {
          "pattern": "*/laptop",
          "mode": "read-only",
        }],
      },
    },
    'config: grants.alice[1].pattern: "*/laptop" overlaps grants.alice[0] ("alice/*"): neither is more specific',
  ],
  [{ "quotas": [] }, 'config: quotas: expected an object with "repos" and/or "users"'],
  [{ "quotas": { "repo": {} } }, "config: quotas.repo: unknown key"],
  [
    { "quotas": { "repos": { "shared/*": "big" } } },
    'config: quotas.repos["shared/*"]: expected a positive integer or a size like "500G"',
  ],
  [
    { "quotas": { "repos": { "a/b/c": "1G" } } },
    'config: quotas.repos["a/b/c"]: more than 2 segments in "a/b/c"',
  ],
  [
    { "quotas": { "repos": { "a/*": "1G", "*/b": "2G" } } },
    'config: quotas.repos["*/b"]: "*/b" overlaps quotas.repos["a/*"] ("a/*"): neither is more specific',
  ],
  [
    { "quotas": { "users": { "bad user": "1G" } } },
    'config: quotas.users["bad user"]: invalid user name',
  ],
  [
    { "quotas": { "users": { "alice": 1.5 } } },
    'config: quotas.users.alice: expected a positive integer or a size like "500G"',
  ],
];

export function basic(user: string, password: string): Record<string, string> {
  return { authorization: "Basic " + btoa(`${user}:${password}`) };
}

/** Runs `fn` with a fresh temp directory that is removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "stowage-policy-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export const BORG_ACCEPT = "application/vnd.x.borgstore.rest.v1";

const quietLog: Logger = { debugEnabled: false, info() {}, error() {}, debug() {} };

export interface PolicyServer {
  /** Sends a request to the in-process handler (path starting with "/"). */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  scopes: QuotaScopes | null;
}

export interface PolicyServerOptions {
  grants: Grants | null;
  /** user → password (plain; compared directly). */
  users: Record<string, string>;
  appendOnly?: boolean;
  privateRepos?: boolean;
  quotas?: QuotaSettings;
  maxSize?: number;
}

/**
 * The handler of src/handler.ts (composeHandler, as src/server.ts builds it) with grantPolicy
 * and QuotaScopes, in process (no listener): for status-code matrices.
 */
export async function policyServer(
  root: string,
  options: PolicyServerOptions,
): Promise<PolicyServer> {
  const fsOptions = { dirMode: 0o700, fileMode: 0o600, warn: () => {} };
  const provider = new FsProvider(root, fsOptions);
  const authenticate = (request: Request) => {
    const credentials = parseBasicAuth(request.headers.get("authorization"));
    if (credentials === null) return Promise.resolve(null);
    const expected = options.users[credentials.user];
    return Promise.resolve(expected === credentials.password ? credentials.user : null);
  };
  const privateRepos = options.privateRepos ?? false;
  const scopes = options.quotas || options.maxSize
    ? await QuotaScopes.open({
      root,
      grants: options.grants,
      quotas: options.quotas ?? { repos: {}, users: {} },
      privateRepos,
      maxSize: options.maxSize,
    })
    : null;
  const policy = grantPolicy(options.grants, {
    appendOnly: options.appendOnly ?? false,
    privateRepos,
    authEnabled: true,
    quotas: scopes ?? undefined,
  });
  const handler = composeHandler({
    provider,
    storeProvider: (dir) => new FsProvider(provider.path(dir), fsOptions),
    authenticate,
    policy,
    userStores: borgStoreDepth(options.grants, privateRepos) === 2,
    verifyUpload: true,
    quota: scopes?.global ?? null,
    borgstore: true,
    log: quietLog,
  });
  return {
    scopes,
    fetch: (path, init) =>
      handler(new Request(`http://stowage.test${path}`, init), {
        remoteAddr: "127.0.0.1",
        transport: "tcp",
      }),
  };
}
