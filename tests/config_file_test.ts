// The config file (src/cli/config_file.ts), unit level: every invalid config is refused with
// the exact key path (UsageError → exit status 2), check-config's summary and exit status,
// precedence defaults < file < STOWAGE_* < flags, relative paths, and the README example.
// The same errors through the wired command line are in tests/policy_cli_test.ts.

import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { BAD_CONFIGS, env, README_EXAMPLE } from "./_policy_fixtures.ts";
import { UsageError } from "../src/cli/flags.ts";
import {
  envName,
  loadConfigFile,
  mergeServeSettings,
  parseConfigText,
  parseServeArgsWithConfig,
  runCheckConfig,
  summarizeConfig,
} from "../src/cli/config_file.ts";
import { parseDuration, parseSize } from "../src/cli/units.ts";

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert(error instanceof UsageError, `not a UsageError: ${error}`);
    return error.message;
  }
  throw new Error("expected a UsageError");
}

Deno.test("config: every kind of mistake is refused with its exact key path", () => {
  for (const [config, expected] of BAD_CONFIGS) {
    assertEquals(messageOf(() => parseConfigText(JSON.stringify(config), "/etc/s.json")), expected);
  }
});

Deno.test("config: invalid JSON and unreadable files are usage errors", async () => {
  const syntax = messageOf(() => parseConfigText("{ path: 1 }", "/etc/s.json"));
  assert(syntax.startsWith("config: /etc/s.json is not valid JSON: "), syntax);
  await assertRejects(
    () => loadConfigFile("/nonexistent/stowage.json"),
    (e) =>
      e instanceof UsageError &&
      e.message === "config: cannot read /nonexistent/stowage.json: no such file or directory",
  );
});

Deno.test("config: the README example is valid and parsed as documented", () => {
  const file = parseConfigText(JSON.stringify(README_EXAMPLE), "/etc/stowage/config.json");
  assertEquals(file.settings, {
    "path": "/srv/backup",
    "listen": ":8000",
    "htpasswd-file": "/etc/stowage/htpasswd",
    "max-size": 2_000_000_000_000,
  });
  assertEquals(file.grants!.alice, [
    { pattern: "alice/*", mode: "all", quota: 500_000_000_000 },
    { pattern: "shared/photos", mode: "read-only" },
  ]);
  assertEquals(file.quotas, {
    repos: { "hosts/*": 100_000_000_000, "shared/photos": 1_000_000_000_000 },
    users: { alice: 600_000_000_000 },
  });
  assertEquals(
    summarizeConfig(file),
    "config /etc/stowage/config.json: ok (4 settings, 5 users with 6 grants, " +
      "2 repository quotas, 1 user quota)",
  );
});

Deno.test("config: relative file names are relative to the config file's directory", () => {
  const file = parseConfigText(
    JSON.stringify({ path: "data", "htpasswd-file": "users", log: "-", "tls-key": "/abs/k" }),
    "/etc/stowage/config.json",
  );
  assertEquals(file.settings, {
    path: "/etc/stowage/data",
    "htpasswd-file": "/etc/stowage/users",
    log: "-",
    "tls-key": "/abs/k",
  });
});

Deno.test("config: precedence defaults < file < STOWAGE_* < flags", () => {
  const file = parseConfigText(
    JSON.stringify({ path: "/file", listen: ":1", "append-only": true, "max-size": "1K" }),
    "/c.json",
  );
  assertEquals(envName("htpasswd-file"), "STOWAGE_HTPASSWD_FILE");
  assertEquals(mergeServeSettings({}, file, env()), {
    path: "/file",
    listen: ":1",
    "append-only": true,
    "max-size": 1000,
  });
  const vars = env({ STOWAGE_LISTEN: ":2", STOWAGE_MAX_SIZE: "7", STOWAGE_APPEND_ONLY: "false" });
  const fromEnv = mergeServeSettings({}, file, vars);
  assertEquals([fromEnv.listen, fromEnv["max-size"], fromEnv["append-only"]], [":2", 7, true]);
  const fromFlags = mergeServeSettings({ listen: ":3", "append-only": false }, file, vars);
  assertEquals([fromFlags.listen, fromFlags["append-only"], fromFlags.path], [
    ":3",
    false,
    "/file",
  ]);
  // environment without a file; empty values are ignored
  const noFile = mergeServeSettings({}, null, env({ STOWAGE_PATH: "/env", STOWAGE_LOG: "" }));
  assertEquals(noFile, { path: "/env" });
  assertEquals(
    messageOf(() => mergeServeSettings({}, null, env({ STOWAGE_MAX_SIZE: "lots" }))),
    'invalid value "lots" for STOWAGE_MAX_SIZE: expected an integer',
  );
});

Deno.test("config: parseServeArgsWithConfig builds the ServeConfig; grants need auth", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/stowage.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({ path: "data", "private-repos": true, "tls-min-ver": "1.3", tls: true }),
    );
    const { config, file } = await parseServeArgsWithConfig(
      ["--config", path, "--listen", "127.0.0.1:0"],
      env({ STOWAGE_LOG: "-" }),
    );
    assertEquals(file?.grants, null);
    assertEquals(config!.path, `${dir}/data`);
    assertEquals(config!.htpasswdFile, `${dir}/data/.htpasswd`);
    assertEquals([config!.listen, config!.log, config!.privateRepos], ["127.0.0.1:0", "-", true]);
    assertEquals([config!.tls, config!.tlsMinVersion], [true, "1.3"]);
    // STOWAGE_CONFIG names the file when --config is absent
    const viaEnv = await parseServeArgsWithConfig([], env({ STOWAGE_CONFIG: path }));
    assertEquals(viaEnv.config!.path, `${dir}/data`);

    await Deno.writeTextFile(path, JSON.stringify({ path: dir, grants: {} }));
    await assertRejects(
      () => parseServeArgsWithConfig(["--config", path, "--no-auth"], env()),
      (e) =>
        e instanceof UsageError &&
        e.message === "config: grants need authentication: remove --no-auth or the grants section",
    );
    await Deno.writeTextFile(path, JSON.stringify({ "tls-min-ver": "1.1", path: dir, tls: true }));
    await assertRejects(
      () => parseServeArgsWithConfig(["--config", path], env()),
      (e) => e instanceof UsageError && /Unsupported TLS min version: 1.1/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config: 0 with a summary, 2 with the message", async () => {
  const dir = await Deno.makeTempDir();
  const lines: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (line: string) => lines.push(`out: ${line}`);
  console.error = (line: string) => lines.push(`err: ${line}`);
  try {
    const good = `${dir}/good.json`;
    await Deno.writeTextFile(good, JSON.stringify(README_EXAMPLE));
    assertEquals(await runCheckConfig([good]), 0);
    const bad = `${dir}/bad.json`;
    await Deno.writeTextFile(
      bad,
      JSON.stringify({
        grants: { alice: [{ pattern: "a", mode: "all" }, { pattern: "b", mode: "al" }] },
      }),
    );
    assertEquals(await runCheckConfig([bad]), 2);
    const tls = `${dir}/tls.json`;
    await Deno.writeTextFile(tls, JSON.stringify({ tls: true, "tls-min-ver": "1.1" }));
    assertEquals(await runCheckConfig([tls]), 2);
    assertEquals(await runCheckConfig([]), 2);
    assertEquals(lines, [
      `out: config ${good}: ok (4 settings, 5 users with 6 grants, 2 repository quotas, 1 user quota)`,
      'err: stowage: config: grants.alice[1].mode: unknown mode "al"',
      "err: stowage: config: Unsupported TLS min version: 1.1. Allowed versions are 1.2 or 1.3",
      "err: stowage: check-config expects exactly one FILE",
    ]);
  } finally {
    console.log = log;
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("units: sizes and durations", () => {
  assertEquals(parseSize("500G"), 500e9);
  assertEquals(parseSize("1.5TiB"), 1.5 * 2 ** 40);
  assertEquals(parseSize("200M"), 200e6);
  assertEquals(parseSize("4096"), 4096);
  assertEquals(parseSize("10KB"), 10_000);
  assertEquals(parseSize(1024), 1024);
  for (const bad of ["", "0", "-1", "1.5", "5X", "G", 0, -3, 1.5, null, true]) {
    assertEquals(parseSize(bad), null, String(bad));
  }
  assertEquals(parseDuration("2d"), 2 * 86_400_000);
  assertEquals(parseDuration("36h"), 36 * 3_600_000);
  assertEquals(parseDuration("1d12h"), 36 * 3_600_000);
  assertEquals(parseDuration("90m"), 90 * 60_000);
  for (const bad of ["", "2", "d", "2x", "0d", "1d 2h"]) {
    assertEquals(parseDuration(bad), null, bad);
  }
});
