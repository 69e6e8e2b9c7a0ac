// `stowage user` (src/cli/user_command.ts), called in process: add/passwd/remove/list round
// trip, comments and foreign lines kept in place, mode 0600, usage errors, the hash verified
// by HtpasswdFile and by Apache's `htpasswd -vb`, and a running server (real child process)
// picking the change up on SIGHUP without a restart.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { spawnStowage } from "./_server.ts";
import { basic, env, withTempDir } from "./_policy_fixtures.ts";
import { hashPassword, runUserCommand, type UserCommandIo } from "../src/cli/user_command.ts";
import { HtpasswdFile, verifyHash } from "../src/http/htpasswd.ts";

interface Run {
  code: number;
  out: string;
  err: string;
}

async function user(
  argv: string[],
  stdin?: string,
  vars: Record<string, string> = {},
): Promise<Run> {
  let out = "";
  let err = "";
  const io: Partial<UserCommandIo> = {
    stdin: new Blob([stdin ?? ""]).stream(),
    isTerminal: () => false,
    setRaw: () => {},
    out: (text) => void (out += text),
    err: (text) => void (err += text),
    env: env(vars),
  };
  const code = await runUserCommand([...argv, "--cost", "4"], io);
  return { code, out, err };
}

const FOREIGN = [
  "# managed by hand, keep this comment",
  "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
  "",
  "not a valid line",
  "dave:$apr1$abcdefgh$0123456789012345678901",
].join("\n") + "\n";

Deno.test("user: add, list, passwd, remove keep foreign lines in place; mode 0600", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/.htpasswd`;
    await Deno.writeTextFile(file, FOREIGN, { mode: 0o644 });
    assertEquals(
      (await user(["add", "alice", "--path", dir, "--password-stdin"], "s3cret\n")).code,
      0,
    );
    assertEquals(
      (await user(
        ["add", "bob@example.org", "--htpasswd-file", file, "--password-stdin"],
        "pw-bob",
      )).code,
      0,
    );
    let text = await Deno.readTextFile(file);
    assert(text.startsWith(FOREIGN), text);
    const lines = text.trimEnd().split("\n");
    assertMatch(lines[5], /^alice:\$2y\$04\$[./A-Za-z0-9]{53}$/);
    assertMatch(lines[6], /^bob@example\.org:\$2y\$04\$/);
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert(await verifyHash(lines[5].slice(6), "s3cret"));

    const list = await user(["list", "--path", dir]);
    assertEquals([list.code, list.out], [0, "carol\ndave\nalice\nbob@example.org\n"]);

    // passwd replaces the line in place (and drops later duplicates)
    await Deno.writeTextFile(file, text + "alice:{SHA}duplicate\n");
    assertEquals(
      (await user(["passwd", "alice", "--path", dir, "--password-stdin"], "new-pw")).code,
      0,
    );
    text = await Deno.readTextFile(file);
    const after = text.trimEnd().split("\n");
    assertEquals(after.length, 7);
    assert(after[5].startsWith("alice:$2y$04$"));
    assert(await verifyHash(after[5].slice(6), "new-pw"));
    assert(!(await verifyHash(after[5].slice(6), "s3cret")));

    assertEquals((await user(["remove", "alice", "--path", dir])).code, 0);
    text = await Deno.readTextFile(file);
    assertEquals(text, FOREIGN + after[6] + "\n");
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    // no temp files left behind
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), [".htpasswd"]);
  });
});

Deno.test("user: errors and usage errors", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/users`;
    const cases: [string[], string | undefined, number, RegExp][] = [
      [
        ["add", "alice", "--htpasswd-file", file],
        undefined,
        2,
        /no terminal to ask for the password: use --password-stdin or --password-file/,
      ],
      [
        ["add", "bad name", "--htpasswd-file", file, "--password-stdin"],
        "x",
        2,
        /invalid user name "bad name"/,
      ],
      [
        ["add", "a:b", "--htpasswd-file", file, "--password-stdin"],
        "x",
        2,
        /invalid user name "a:b"/,
      ],
      [["add", "alice"], "x", 2, /which htpasswd file\? use --htpasswd-file FILE or --path DIR/],
      [
        ["add", "alice", "--htpasswd-file", file, "--password-stdin"],
        "\n",
        1,
        /empty password refused/,
      ],
      [["passwd", "alice", "--htpasswd-file", file, "--password-stdin"], "x", 1, /no user alice/],
      [["remove", "alice", "--htpasswd-file", file], undefined, 1, /no such file or directory/],
      [
        ["frobnicate", "x", "--htpasswd-file", file],
        undefined,
        2,
        /unknown user command "frobnicate"/,
      ],
      [["add", "--htpasswd-file", file], undefined, 2, /user add expects exactly one NAME/],
      [
        ["add", "alice", "--htpasswd-file", file, "--password", "x"],
        undefined,
        2,
        /unknown flag: --password/,
      ],
    ];
    for (const [argv, stdin, code, pattern] of cases) {
      const run = await user(argv, stdin);
      assertEquals(run.code, code, `${argv.join(" ")}: ${run.err}`);
      assertMatch(run.err, pattern);
    }
    assertEquals(
      (await user(["add", "alice", "--htpasswd-file", file, "--password-stdin"], "x")).code,
      0,
    );
    const again = await user(["add", "alice", "--htpasswd-file", file, "--password-stdin"], "y");
    assertEquals(again.code, 1);
    assertMatch(again.err, /user alice already exists \(use: stowage user passwd alice\)/);
    const cost = await runUserCommand(["add", "x", "--htpasswd-file", file, "--cost", "3"], {
      err: () => {},
      env: env(),
    });
    assertEquals(cost, 2);
    // STOWAGE_HTPASSWD_FILE, and the password from a file (first line)
    await Deno.writeTextFile(`${dir}/pw`, "from-file\nignored\n");
    const viaEnv = await user(["add", "erin", "--password-file", `${dir}/pw`], undefined, {
      STOWAGE_HTPASSWD_FILE: file,
    });
    assertEquals(viaEnv.code, 0, viaEnv.err);
    const table = await HtpasswdFile.load(file, () => {});
    assert(await table.verify("erin", "from-file"));
  });
});

Deno.test({
  name: "user: the hash is $2y$ bcrypt that Apache's htpasswd verifies",
  ignore: peerMissing("htpasswd"),
  async fn() {
    await withTempDir(async (dir) => {
      const file = `${dir}/.htpasswd`;
      const run = await runUserCommand(["add", "alice", "--path", dir, "--password-stdin"], {
        stdin: new Blob(["correct horse\n"]).stream(),
        err: () => {},
        env: env(),
      });
      assertEquals(run, 0);
      assertMatch(await Deno.readTextFile(file), /^alice:\$2y\$12\$/);
      const verify = (password: string) =>
        new Deno.Command("htpasswd", { args: ["-vb", file, "alice", password], stderr: "piped" })
          .output();
      assertEquals((await verify("correct horse")).code, 0);
      assertEquals((await verify("wrong")).code, 3);
      assertMatch(await hashPassword("x", 4), /^\$2y\$04\$/);
    });
  },
});

Deno.test("user: HtpasswdFile notices the atomic rewrite by mtime/size (reload check)", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/.htpasswd`;
    await user(["add", "alice", "--path", dir, "--password-stdin"], "one");
    const table = await HtpasswdFile.load(file, () => {}, { reloadIntervalMs: 0 });
    assert(await table.verify("alice", "one"));
    await user(["passwd", "alice", "--path", dir, "--password-stdin"], "two"); // same size
    assert(await table.maybeReload());
    assert(await table.verify("alice", "two"));
    assert(!(await table.verify("alice", "one")));
    await user(["remove", "alice", "--path", dir]);
    assert(await table.maybeReload());
    assertEquals(table.userCount, 0);
  });
});

Deno.test("user: a running server picks up add/passwd/remove on SIGHUP, no restart", async () => {
  await withTempDir(async (dir) => {
    await user(["add", "admin", "--path", dir, "--password-stdin"], "pw-admin");
    const server = await spawnStowage(["--path", dir, "--listen", "127.0.0.1:0"]);
    try {
      const status = async (name: string, password: string) => {
        const response = await fetch(`${server.url}/${name}-repo/?create=true`, {
          method: "POST",
          headers: basic(name, password),
        });
        await response.body?.cancel();
        return response.status;
      };
      const hup = async () => {
        const seen = server.stderr.filter((l) => l.includes("Reloaded htpasswd file")).length;
        server.process.kill("SIGHUP");
        const deadline = Date.now() + 10_000;
        while (server.stderr.filter((l) => l.includes("Reloaded htpasswd file")).length <= seen) {
          if (Date.now() > deadline) throw new Error(`no reload:\n${server.stderr.join("\n")}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      assertEquals(await status("admin", "pw-admin"), 200);
      assertEquals(await status("alice", "one"), 401);
      await user(["add", "alice", "--path", dir, "--password-stdin"], "one");
      await hup();
      assertEquals(await status("alice", "one"), 200);
      await user(["passwd", "alice", "--path", dir, "--password-stdin"], "two");
      await hup();
      assertEquals(await status("alice", "one"), 401);
      assertEquals(await status("alice", "two"), 200);
      await user(["remove", "alice", "--path", dir]);
      await hup();
      assertEquals(await status("alice", "two"), 401);
    } finally {
      assertEquals(await server.stop(), 0);
    }
  });
});
