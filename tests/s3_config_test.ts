// S3 backend settings (src/storage/s3_config.ts): the s3:// URL, endpoint and region defaults
// from the AWS environment variables, credentials from files, config values or the
// environment (never argv), and one-line errors for what is wrong. No object store needed.

import { S3ConfigError, s3ProviderOptions } from "../src/storage/s3_config.ts";
import { createS3Provider, parseS3Backend } from "../src/storage/s3_config.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";

const KEYS = { AWS_ACCESS_KEY_ID: "AKID", AWS_SECRET_ACCESS_KEY: "SECRET" };

Deno.test("s3 config: s3://bucket/prefix", () => {
  assertEquals(parseS3Backend("s3://b"), { bucket: "b", prefix: "" });
  assertEquals(parseS3Backend("s3://b/"), { bucket: "b", prefix: "" });
  assertEquals(parseS3Backend("s3://my.bucket/a/b/"), { bucket: "my.bucket", prefix: "a/b" });
  for (const bad of ["s3:/b", "http://b/x", "s3://", "s3://b/a/../c", "s3://b/a//c", "s3://b?x"]) {
    assertThrows(() => parseS3Backend(bad), (e) => e instanceof S3ConfigError);
  }
});

Deno.test("s3 config: endpoint and region from flags, then AWS variables, then AWS", async () => {
  const aws = await s3ProviderOptions({ backend: "s3://b/p" }, KEYS);
  assertEquals(aws.endpoint, "https://s3.us-east-1.amazonaws.com");
  assertEquals(aws.region, "us-east-1");
  assertEquals(aws.prefix, "p");
  assertEquals(aws.pathStyle, undefined, "automatic");
  const fromEnv = await s3ProviderOptions({ backend: "s3://b" }, {
    ...KEYS,
    AWS_REGION: "eu-west-3",
    AWS_ENDPOINT_URL: "http://10.0.0.1:7480",
    AWS_SESSION_TOKEN: "token",
  });
  assertEquals(fromEnv.endpoint, "http://10.0.0.1:7480");
  assertEquals(fromEnv.region, "eu-west-3");
  assertEquals(fromEnv.credentials.sessionToken, "token");
  const flags = await s3ProviderOptions({
    backend: "s3://b",
    endpoint: "http://127.0.0.1:9000",
    region: "default",
    pathStyle: true,
    partSize: 16 * 1024 * 1024,
  }, { ...KEYS, AWS_ENDPOINT_URL_S3: "http://ignored" });
  assertEquals(flags.endpoint, "http://127.0.0.1:9000");
  assertEquals(flags.region, "default");
  assertEquals(flags.pathStyle, true);
  assertEquals(flags.partSize, 16 * 1024 * 1024);
  assertEquals(flags.multipartThreshold, 16 * 1024 * 1024);
});

Deno.test("s3 config: credentials from files, config values or the environment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "stowage-s3-config-" });
  try {
    await Deno.writeTextFile(`${dir}/id`, "FILEID\n");
    await Deno.writeTextFile(`${dir}/secret`, "  FILESECRET\n");
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    const files = await s3ProviderOptions({
      backend: "s3://b",
      accessKeyFile: `${dir}/id`,
      secretKeyFile: `${dir}/secret`,
    }, { ...KEYS, AWS_SESSION_TOKEN: "not for file keys" });
    assertEquals(files.credentials, {
      accessKeyId: "FILEID",
      secretAccessKey: "FILESECRET",
      sessionToken: undefined,
    });
    const inline = await s3ProviderOptions(
      { backend: "s3://b", accessKeyId: "CFG", secretAccessKey: "CFGSECRET" },
      KEYS,
    );
    assertEquals(inline.credentials.accessKeyId, "CFG");
    const env = await s3ProviderOptions({ backend: "s3://b" }, KEYS);
    assertEquals(env.credentials.secretAccessKey, "SECRET");

    const failures: Array<[Parameters<typeof s3ProviderOptions>[0], RegExp]> = [
      [{ backend: "s3://b" }, /^S3 credentials missing: set AWS_ACCESS_KEY_ID/],
      [{ backend: "s3://b", secretKeyFile: `${dir}/empty` }, /S3 secret key file .* is empty$/],
      [{ backend: "s3://b", accessKeyFile: `${dir}/nope` }, /cannot read the S3 access key/],
      [{ backend: "s3://b", endpoint: "ftp://x" }, /invalid S3 endpoint ftp:\/\/x/],
      [{ backend: "s3://b", partSize: 1000 }, /part size must be at least 1 MiB/],
    ];
    for (const [settings, pattern] of failures) {
      const env = settings.accessKeyFile || settings.secretKeyFile || settings.endpoint ||
          settings.partSize
        ? KEYS
        : {};
      await assertRejects(
        () => s3ProviderOptions(settings, env),
        (e) => e instanceof S3ConfigError && pattern.test(e.message) && !e.message.includes("\n"),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("s3 config: createS3Provider reports invalid combinations as S3ConfigError", async () => {
  const provider = await createS3Provider(
    { backend: "s3://bucket/pre", endpoint: "http://127.0.0.1:7480" },
    KEYS,
  );
  assertEquals(provider.client.pathStyle, true);
  assert(provider.description.includes("under pre/"), provider.description);
  assert(!provider.description.includes("SECRET"));
  await assertRejects(
    () => createS3Provider({ backend: "s3://Not_A_Host", endpoint: "https://s3.example" }, KEYS),
    (e) => e instanceof S3ConfigError && /path-style/.test(e.message),
  );
});
