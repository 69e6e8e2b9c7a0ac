// `stowage serve --backend s3://BUCKET/PREFIX` against Ceph RGW (scripts/ceph-rgw.sh, started
// here): the startup line names the bucket, restic runs a full cycle through it, credentials
// come from the environment or from files (never argv), and every startup problem (wrong
// secret, unknown key, missing bucket, unreachable endpoint, no credentials) ends the process
// with one clear line. Runs once `serve` has the --s3-* flags (SERVE_FLAGS); ignored without
// radosgw and restic unless STOWAGE_REQUIRE_PEERS=1.

import { SERVE_FLAGS } from "../src/cli/serve_config.ts";
import { assert, assertEquals } from "./_assert.ts";
import { CEPH_MISSING, type CephCluster, closedEndpoint, lazyCeph } from "./_ceph.ts";
import { peerMissing } from "./_peers.ts";
import { randomBytes, runStowage, spawnStowage, treeSnapshot } from "./_server.ts";
import { resticOk } from "./_restic.ts";

const WIRED = SERVE_FLAGS.some((flag) => flag.name === "s3-endpoint");
const IGNORE = !WIRED || CEPH_MISSING || peerMissing("restic");
const ceph = lazyCeph();

/** The serve arguments for the cluster's bucket below `prefix`. */
function s3Args(cluster: CephCluster, prefix: string, extra: string[] = []): string[] {
  return [
    "serve",
    "--backend",
    `s3://${cluster.bucket}/${prefix}`,
    "--s3-endpoint",
    cluster.endpoint,
    "--s3-region",
    "default",
    "--s3-path-style",
    "--no-auth",
    "--listen",
    "127.0.0.1:0",
    ...extra,
  ];
}

/** The environment of a child: PATH and HOME plus what the test adds (no inherited AWS_*). */
function childEnv(add: Record<string, string>): Record<string, string> {
  return { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/", ...add };
}

function credentials(cluster: CephCluster): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: cluster.accessKeyId,
    AWS_SECRET_ACCESS_KEY: cluster.secretAccessKey,
  };
}

Deno.test({
  name: "s3 cli: serve --backend s3://… runs restic through the bucket",
  ignore: IGNORE,
  async fn() {
    const cluster = await ceph.get();
    const prefix = `cli-${crypto.randomUUID()}`;
    const server = await spawnStowage(s3Args(cluster, prefix), {
      env: childEnv(credentials(cluster)),
    });
    const work = await Deno.makeTempDir({ prefix: "stowage-s3-cli-" });
    try {
      assert(
        server.stderr.some((line) => line.includes(`S3 bucket ${cluster.bucket} at`)),
        `no startup line naming the bucket:\n${server.stderr.join("\n")}`,
      );
      assert(!server.stderr.join("\n").includes(cluster.secretAccessKey), "secret logged");
      const source = `${work}/source`;
      await Deno.mkdir(`${source}/sub`, { recursive: true });
      await Deno.writeFile(`${source}/sub/blob.bin`, randomBytes(3 * 1024 * 1024));
      await Deno.writeTextFile(`${source}/notes.txt`, "through s3\n".repeat(100));
      const repo = `rest:${server.url}/cli/`;
      await resticOk(repo, ["init"]);
      await resticOk(repo, ["backup", source]);
      await resticOk(repo, ["check", "--read-data"]);
      await resticOk(repo, ["restore", "latest", "--target", `${work}/restore`]);
      assertEquals(await treeSnapshot(`${work}/restore${source}`), await treeSnapshot(source));
    } finally {
      await server.stop();
      await Deno.remove(work, { recursive: true });
      await cluster.provider("cleanup", { prefix }).removeTree("");
    }
  },
});

Deno.test({
  name: "s3 cli: credentials from --s3-access-key-file / --s3-secret-key-file",
  ignore: IGNORE,
  async fn() {
    const cluster = await ceph.get();
    const dir = await Deno.makeTempDir({ prefix: "stowage-s3-cli-keys-" });
    const prefix = `cli-files-${crypto.randomUUID()}`;
    try {
      await Deno.writeTextFile(`${dir}/access`, `${cluster.accessKeyId}\n`);
      await Deno.writeTextFile(`${dir}/secret`, `${cluster.secretAccessKey}\n`);
      const server = await spawnStowage(
        s3Args(cluster, prefix, [
          "--s3-access-key-file",
          `${dir}/access`,
          "--s3-secret-key-file",
          `${dir}/secret`,
        ]),
        { env: childEnv({}) },
      );
      try {
        const created = await fetch(`${server.url}/r/?create=true`, { method: "POST" });
        await created.body?.cancel();
        assertEquals(created.status, 200);
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
      await cluster.provider("cleanup", { prefix }).removeTree("");
    }
  },
});

Deno.test({
  name: "s3 cli: startup problems end the process with one clear line",
  ignore: IGNORE,
  async fn() {
    const cluster = await ceph.get();
    const down = closedEndpoint();
    const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
      [
        "wrong secret",
        s3Args(cluster, "x"),
        { AWS_ACCESS_KEY_ID: cluster.accessKeyId, AWS_SECRET_ACCESS_KEY: "wrong" },
        /rejected the signature: check the secret access key/,
      ],
      [
        "unknown access key",
        s3Args(cluster, "x"),
        { AWS_ACCESS_KEY_ID: "nobody", AWS_SECRET_ACCESS_KEY: "x" },
        /does not know the access key ID/,
      ],
      [
        "missing bucket",
        ["serve", "--backend", "s3://no-such-bucket", ...s3Args(cluster, "x").slice(3)],
        credentials(cluster),
        /bucket no-such-bucket does not exist/,
      ],
      [
        "unreachable endpoint",
        s3Args(cluster, "x").map((a) => (a === cluster.endpoint ? down : a)),
        credentials(cluster),
        new RegExp(`cannot reach ${down}/${cluster.bucket}: `),
      ],
      ["no credentials", s3Args(cluster, "x"), {}, /S3 credentials missing/],
    ];
    for (const [what, args, env, pattern] of cases) {
      const started = Date.now();
      const out = await runStowage(args, { env: childEnv(env) });
      assert(out.code !== 0, `${what}: exit code ${out.code}`);
      const lines = out.stderr.trim().split("\n").filter((l) => !/WARNING/.test(l));
      const errorLines = lines.filter((l) => pattern.test(l));
      assertEquals(errorLines.length, 1, `${what}:\n${out.stderr}`);
      assert(!out.stderr.includes(cluster.secretAccessKey), `${what}: secret printed`);
      assert(Date.now() - started < 30_000, `${what}: took too long`);
    }
  },
});

Deno.test({
  name: "s3 cli: stop the cluster",
  ignore: IGNORE,
  async fn() {
    await ceph.stop();
  },
});
