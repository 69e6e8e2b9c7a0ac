// Test helper for the S3 provider: a throw-away Ceph cluster with radosgw, started through
// scripts/ceph-rgw.sh, once per test file (lazily, by the first test that needs it) and stopped
// by the file's last test; the script's watcher stops it too when the test process dies.
// Set STOWAGE_TEST_CEPH_DIR to share one cluster between test files: it is started there when
// not running yet and left running (stop it with `scripts/ceph-rgw.sh stop DIR`).
// Tests are ignored when radosgw is not installed, unless STOWAGE_REQUIRE_PEERS=1.

import { S3Provider, type S3ProviderOptions } from "../src/storage/s3.ts";
import { peerMissing } from "./_peers.ts";

export const SCRIPT = new URL("../scripts/ceph-rgw.sh", import.meta.url).pathname;

/** For `ignore:`: radosgw is missing and not required. */
export const CEPH_MISSING = peerMissing("radosgw");

export interface CephCluster {
  dir: string;
  /** The env lines of the script: S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_* keys. */
  env: Record<string, string>;
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Provider options for this cluster (path-style, its credentials) plus `extra`. */
  options(extra?: Partial<S3ProviderOptions>): S3ProviderOptions;
  /** A provider below a fresh random prefix (`name-<uuid>`). */
  provider(name: string, extra?: Partial<S3ProviderOptions>): S3Provider;
  /** Kills radosgw (as a crash would) and starts it again. */
  rgwStop(): Promise<void>;
  rgwStart(): Promise<void>;
  stop(): Promise<void>;
}

async function script(args: string[], env: Record<string, string> = {}): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [SCRIPT, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const decoder = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(
      `ceph-rgw.sh ${args.join(" ")} failed (${out.code}):\n${decoder.decode(out.stderr)}`,
    );
  }
  return decoder.decode(out.stdout);
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^(?:export\s+)?([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) env[match[1]] = match[2];
  }
  return env;
}

function cluster(dir: string, env: Record<string, string>, owned: boolean): CephCluster {
  const options = (extra: Partial<S3ProviderOptions> = {}): S3ProviderOptions => ({
    endpoint: env.S3_ENDPOINT,
    region: env.S3_REGION,
    bucket: env.S3_BUCKET,
    pathStyle: true,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    },
    ...extra,
  });
  return {
    dir,
    env,
    endpoint: env.S3_ENDPOINT,
    bucket: env.S3_BUCKET,
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    options,
    provider: (name, extra = {}) =>
      new S3Provider(options({ prefix: `${name}-${crypto.randomUUID()}`, ...extra })),
    rgwStop: async () => void await script(["rgw-stop", dir]),
    rgwStart: async () => void await script(["rgw-start", dir]),
    stop: async () => {
      if (owned) await script(["stop", dir]);
    },
  };
}

/** A loopback URL nothing listens on (the port was free a moment ago). */
export function closedEndpoint(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return `http://127.0.0.1:${port}`;
}

/** Starts a cluster in a new temporary directory (or reuses STOWAGE_TEST_CEPH_DIR's). */
export async function startCeph(): Promise<CephCluster> {
  const shared = Deno.env.get("STOWAGE_TEST_CEPH_DIR");
  if (shared) {
    const running = await script(["env", shared]).catch(() => null);
    const text = running ?? await script(["start", shared]);
    return cluster(shared, parseEnv(text), false);
  }
  const dir = await Deno.makeTempDir({ prefix: "stowage-ceph-" });
  try {
    const text = await script(["start", dir], { WATCH_PID: String(Deno.pid) });
    return cluster(dir, parseEnv(text), true);
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * One cluster per test file: `get()` starts it on first use, `stop()` (the file's last test)
 * stops it.
 */
export function lazyCeph(): { get(): Promise<CephCluster>; stop(): Promise<void> } {
  let started: Promise<CephCluster> | null = null;
  return {
    get() {
      started ??= startCeph();
      return started;
    },
    async stop() {
      if (started === null) return;
      const running = await started.catch(() => null);
      started = null;
      await running?.stop();
    },
  };
}
