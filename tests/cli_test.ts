// The command line of `stowage serve`: usage errors (exit 2), startup failures (exit 1), the
// startup lines, --help/--version, and graceful shutdown with an upload in flight.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { runStowage, sha256Hex, spawnStowage, treeSnapshot } from "./_server.ts";

Deno.test("cli: usage errors exit 2 with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--path", "/tmp/x", "--bogus"], /unknown flag: --bogus/],
    [["--path", "/tmp/x", "extra"], /unknown argument: extra/],
    [["--no-auth"], /--path is required/],
    [["--path", "/tmp/x", "--listen"], /flag needs an argument: --listen/],
    [["--path", "/tmp/x", "--max-size", "lots"], /expected an integer/],
    [["--path", "/tmp/x", "--tls-key", "k"], /requires enabled TLS/],
    [
      ["--path", "/tmp/x", "--tls", "--tls-min-ver", "1.1"],
      /Unsupported TLS min version: 1.1. Allowed versions are 1.2 or 1.3/,
    ],
    [["serve", "--path", "/tmp/x", "--no-auth=maybe"], /expected true or false/],
  ];
  for (const [args, pattern] of cases) {
    const run = await runStowage(args);
    assertEquals(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assertMatch(run.stderr, pattern);
    assertEquals(run.stderr.trim().split("\n").length, 1, run.stderr);
  }
});

Deno.test("cli: startup failures exit 1 with a clear message", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const noUsers = await runStowage(["--path", dir, "--listen", "127.0.0.1:0"]);
    assertEquals(noUsers.code, 1);
    assertMatch(
      noUsers.stderr,
      new RegExp(`error: cannot load ${dir}/\\.htpasswd \\(use --no-auth to disable\\): `),
    );
    const quota = await runStowage([
      "--path",
      `${dir}/missing`,
      "--no-auth",
      "--max-size",
      "100",
      "--listen",
      "127.0.0.1:0",
    ]);
    assertEquals(quota.code, 1);
    assertMatch(quota.stderr, /lstat .* no such file or directory/);
    const busy = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
    try {
      const clash = await runStowage([
        "--path",
        dir,
        "--no-auth",
        "--listen",
        `127.0.0.1:${busy.port}`,
      ]);
      assertEquals(clash.code, 1);
      assertMatch(clash.stderr, /unable to listen/);
    } finally {
      await busy.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --help, --version and the startup lines", async () => {
  const help = await runStowage(["serve", "--help"]);
  assertEquals(help.code, 0);
  for (const flag of ["--path", "--listen", "--append-only", "--private-repos", "--max-size"]) {
    assert(help.stdout.includes(flag), flag);
  }
  const version = await runStowage(["--version"]);
  assertEquals(version.code, 0);
  assertMatch(version.stdout, /^stowage \d+\.\d+\.\d+/);

  const dir = await Deno.makeTempDir();
  const server = await spawnStowage([
    "serve",
    "--path",
    dir,
    "--no-auth",
    "--listen",
    "127.0.0.1:0",
  ]);
  try {
    assert(server.stderr.includes(`Data directory: ${dir}`));
    assert(server.stderr.includes("Authentication disabled"));
    assert(server.stderr.some((l) => /WARNING: authentication is disabled/.test(l)));
    assertMatch(
      server.stderr.find((l) => l.startsWith("start server on"))!,
      /^start server on 127\.0\.0\.1:\d+$/,
    );
    assert(server.port > 0);
  } finally {
    assertEquals(await server.stop("SIGINT"), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: SIGTERM lets an in-flight upload finish, then exits 0", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage(["--path", dir, "--no-auth", "--listen", "127.0.0.1:0"]);
  const body = new Uint8Array(2 * 1024 * 1024).fill(7);
  const id = sha256Hex(body);
  try {
    let sent = 0;
    let release!: () => void;
    const halfway = new Promise<void>((resolve) => (release = resolve));
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= body.byteLength) {
          controller.close();
          return;
        }
        if (sent === body.byteLength / 2) {
          release();
          await new Promise((r) => setTimeout(r, 500));
        }
        controller.enqueue(body.subarray(sent, sent + 64 * 1024));
        sent += 64 * 1024;
      },
    });
    const upload = fetch(`${server.url}/data/${id}`, {
      method: "POST",
      body: stream,
      headers: { "content-length": String(body.byteLength) },
    });
    await halfway;
    server.process.kill("SIGTERM");
    const response = await upload;
    assertEquals(response.status, 200);
    await response.body?.cancel();
    assertEquals(await server.stop(), 0);
    assert(server.stderr.includes("shutdown cleanly"));
    const stored = await Deno.readFile(`${dir}/data/${id.slice(0, 2)}/${id}`);
    assertEquals(sha256Hex(stored), id);
    for (const name of (await treeSnapshot(dir)).keys()) assert(!name.includes("stowage-tmp"));
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
