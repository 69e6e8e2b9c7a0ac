// Tests for src/http/htpasswd.ts: parsing, every hash format (produced by the real htpasswd and
// openssl tools where possible), the credential cache and reloading.

import { createHash } from "node:crypto";
import {
  HtpasswdFile,
  type HtpasswdOptions,
  parseHtpasswd,
  verifyHash,
} from "../src/http/htpasswd.ts";
import { peerMissing } from "./_peers.ts";

/** Fails the test with `message` unless `condition` holds. */
function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

/** Fails unless `actual` and `expected` have the same JSON form. */
function assertEquals(actual: unknown, expected: unknown, message = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message} expected ${e}, got ${a}`);
}

/** Runs a command and returns its trimmed stdout; throws on a non-zero exit. */
async function run(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${stderr}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** The hash part of an `htpasswd -n` line. */
async function htpasswdHash(...args: string[]): Promise<string> {
  const line = await run("htpasswd", "-n", ...args);
  return line.slice(line.indexOf(":") + 1);
}

/** A log collector. */
function logger(): { lines: string[]; log: (line: string) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

const tempDirs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) Deno.removeSync(dir, { recursive: true });
});

/** A temporary htpasswd file with the given content (removed at exit); returns its path. */
async function tempFile(content: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "stowage-htpasswd-" });
  tempDirs.push(dir);
  const path = `${dir}/.htpasswd`;
  await Deno.writeTextFile(path, content);
  return path;
}

/** `{SHA}` hash of a password, computed without external tools. */
function shaHash(password: string): string {
  return `{SHA}${createHash("sha1").update(password).digest("base64")}`;
}

/** A controllable clock for cache and reload tests. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

Deno.test("parse: CRLF, comments, blank lines, extra fields, leading whitespace", () => {
  const text = "# comment\r\n\r\nalice:{SHA}a\r\n   \n  bob: $2y$05$x:extra:more\r\ncarol:h\n";
  const { users, warnings } = parseHtpasswd(text);
  assertEquals([...users], [["alice", "{SHA}a"], ["bob", "$2y$05$x"], ["carol", "h"]]);
  assertEquals(warnings, []);
});

Deno.test("parse: invalid usernames skipped with line number, hash never in warnings", () => {
  const text =
    "user one:SECRETHASH1\nbad/user:SECRETHASH2\n:SECRETHASH3\nünï:ok\nuser_x@a.b-c:ok2\n";
  const { users, warnings } = parseHtpasswd(text);
  assertEquals([...users.keys()], ["ünï", "user_x@a.b-c"]);
  assertEquals(warnings.length, 3);
  assertEquals(
    warnings[0],
    `Ignoring invalid username "user one" in htpasswd, consists of characters other than ` +
      `letters, numbers, '_', '-', '.' and '@' (line 1)`,
  );
  assert(warnings[1].includes('"bad/user"') && warnings[1].includes("(line 2)"));
  assert(warnings[2].includes('""') && warnings[2].includes("(line 3)"));
  for (const w of warnings) assert(!w.includes("SECRETHASH"), w);
});

Deno.test("parse: line without colon is skipped with its line number, never throws", () => {
  const { users, warnings } = parseHtpasswd("onlyname\nalice:h\n  plaintextpassword  \n");
  assertEquals([...users.keys()], ["alice"]);
  assertEquals(warnings.length, 2);
  assert(warnings[0].includes("line 1") && warnings[1].includes("line 3"));
  assert(!warnings.join().includes("plaintextpassword") && !warnings.join().includes("onlyname"));
  assertEquals(parseHtpasswd("onlyname").users.size, 0);
  assertEquals(parseHtpasswd("").users.size, 0);
});

Deno.test("parse: duplicate user, last wins; control characters escaped in warnings", () => {
  assertEquals(parseHtpasswd("a:1\nb:2\na:3\n").users.get("a"), "3");
  const { warnings } = parseHtpasswd("evil\u001b[31m:h\n");
  assert(!warnings[0].includes("\u001b") && warnings[0].includes("\\u001b"), warnings[0]);
});

Deno.test({
  name: "verify: bcrypt from htpasswd -B ($2y$), default and explicit cost",
  ignore: peerMissing("htpasswd"),
  fn: async () => {
    const defaultCost = await htpasswdHash("-bB", "u", "pw");
    const cost4 = await htpasswdHash("-bB", "-C", "4", "u", "pä:ss wörd");
    assert(defaultCost.startsWith("$2y$"), defaultCost);
    assert(await verifyHash(defaultCost, "pw"));
    assert(!(await verifyHash(defaultCost, "pW")));
    assert(!(await verifyHash(defaultCost, "")));
    assert(await verifyHash(cost4, "pä:ss wörd"));
    assert(!(await verifyHash(cost4, "pä:ss wörd ")));
    for (const prefix of ["$2a$", "$2b$"]) {
      assert(await verifyHash(prefix + cost4.slice(4), "pä:ss wörd"), prefix);
    }
    assert(!(await verifyHash("$2x$" + cost4.slice(4), "pä:ss wörd")));
  },
});

Deno.test({
  name: "verify: {SHA} and $apr1$ from htpasswd -s / -m",
  ignore: peerMissing("htpasswd"),
  fn: async () => {
    const sha = await htpasswdHash("-bs", "u", "secret");
    const md5 = await htpasswdHash("-bm", "u", "secret");
    assertEquals(sha, shaHash("secret"));
    assert(md5.startsWith("$apr1$"), md5);
    for (const hash of [sha, md5]) {
      assert(await verifyHash(hash, "secret"), hash);
      assert(!(await verifyHash(hash, "Secret")), hash);
      assert(!(await verifyHash(hash, "")), hash);
    }
    assert(await verifyHash(await htpasswdHash("-bs", "u", ""), ""));
  },
});

Deno.test({
  name: "verify: $5$, $6$ and $apr1$ from openssl passwd",
  ignore: peerMissing("openssl"),
  fn: async () => {
    const pw = "p@ss wörd:x";
    const hashes = [
      await run("openssl", "passwd", "-5", "-salt", "saltsaltsaltsaltXX", pw),
      await run("openssl", "passwd", "-5", pw),
      await run("openssl", "passwd", "-6", "-salt", "s", pw),
      await run("openssl", "passwd", "-6", pw),
      await run("openssl", "passwd", "-apr1", pw),
      await run("openssl", "passwd", "-apr1", "-salt", "abcdefgh", pw),
    ];
    for (const hash of hashes) {
      assert(await verifyHash(hash, pw), hash);
      assert(!(await verifyHash(hash, pw + "x")), hash);
      assert(!(await verifyHash(hash, "")), hash);
    }
  },
});

Deno.test("verify: sha-crypt with rounds= (vectors from libxcrypt crypt(3))", async () => {
  const sha512 = "$6$rounds=1234$xy$yuTeK4zBLdzs475tMSYAGtU4o2Socp7EbjFZCwl4Rih//s0ZEFbvpsIY" +
    "rRTKRB1.JjGHOvgtfSQSFFlWXofH91";
  const sha256 = "$5$rounds=5000$toolongsaltstrin$0vuwUia3Nx9V/DqToMS8YLcfXpEXmSaC8wgguLIbus2";
  const sha512More = "$6$rounds=20000$abc$vBKAfLOK2E/4qCv/KdEJnTl05dMuDHz2xYVM1QNMYfm53qyNlJjv" +
    "uLvOIqDjRekQAUq2JTmV4q5S3MPZk2ZM4/";
  assert(await verifyHash(sha512, "p@ss wörd"));
  assert(!(await verifyHash(sha512, "p@ss word")));
  assert(await verifyHash(sha256, "Hello world!"));
  assert(await verifyHash("$5$abc$bBHLwRRW2Li0XKaX13kz/g2fkDil4Jx46aNvd.48MS8", ""));
  assert(await verifyHash(sha512More, "x"));
  assert(!(await verifyHash(sha512More, "y")));
});

Deno.test("verify: unknown and malformed formats are false, never throw", async () => {
  const bad = [
    "",
    "plaintext",
    "pw",
    "$1$abc$0123456789012345678901",
    "$2y$05$short",
    "$2y$99$" + "a".repeat(53),
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "{SHA}",
    "{SHA}not base64 at all",
    "$apr1$$",
    "$5$rounds=abc$salt$hash",
    "$6$salt$",
    "abJnggxhB/yWI", // crypt(3) DES of "pw"
  ];
  for (const hash of bad) assert(!(await verifyHash(hash, "pw")), hash);
  assert(!(await verifyHash("pw", "pw")), "plain text must never be accepted");
});

Deno.test("HtpasswdFile.load: logs, missing file and directory give short reasons", async () => {
  const { lines, log } = logger();
  const path = await tempFile(`alice:${shaHash("a")}\nbad user:x\n`);
  const file = await HtpasswdFile.load(path, log);
  assertEquals(file.userCount, 1);
  assert(lines.some((l) => l.startsWith('Ignoring invalid username "bad user"')));
  assertEquals(lines.at(-1), `Loaded htpasswd file ${path}`);
  const missing = path + ".missing";
  let message = "";
  await HtpasswdFile.load(missing, log).catch((e: Error) => (message = e.message));
  assertEquals(message, "no such file or directory");
  const dir = path.slice(0, path.lastIndexOf("/"));
  await HtpasswdFile.load(dir, log).catch((e: Error) => (message = e.message));
  assertEquals(message, "is a directory");
});

Deno.test("HtpasswdFile: empty file is valid and rejects everyone", async () => {
  const path = await tempFile("");
  const file = await HtpasswdFile.load(path, () => {});
  assertEquals(file.userCount, 0);
  assert(!(await file.verify("alice", "a")));
  assert(!(await file.verify("", "")));
});

Deno.test("HtpasswdFile.verify: unknown user, wrong password, cache hit and expiry", async () => {
  const clock = fakeClock();
  const { lines, log } = logger();
  const path = await tempFile(`alice:${shaHash("a:b")}\nbob:${shaHash("b")}\n`);
  const options: HtpasswdOptions = { now: clock.now, cacheTtlMs: 60_000 };
  const file = await HtpasswdFile.load(path, log, options);
  assert(!(await file.verify("mallory", "a:b")));
  assertEquals(file.stats.hashChecks, 0);
  assert(!(await file.verify("alice", "a")));
  assert(lines.includes("Invalid htpasswd entry for alice."));
  assertEquals(file.cacheSize, 0);
  assert(await file.verify("alice", "a:b"));
  assertEquals([file.stats.hashChecks, file.cacheSize], [2, 1]);
  clock.advance(59_999);
  assert(await file.verify("alice", "a:b"));
  assertEquals([file.stats.hashChecks, file.stats.cacheHits], [2, 1]);
  assert(!(await file.verify("alice", "a:c")), "cache must not accept another password");
  assert(!(await file.verify("bob", "a:b")), "cache must not accept another user");
  clock.advance(1);
  assertEquals(file.cacheSize, 0, "entry must expire exactly 60 s after verification");
  assert(await file.verify("alice", "a:b"));
  assertEquals([file.stats.hashChecks, file.stats.cacheHits], [5, 1]);
});

Deno.test("HtpasswdFile cache: entries really expire with the real clock", async () => {
  const path = await tempFile(`alice:${shaHash("a")}\n`);
  const file = await HtpasswdFile.load(path, () => {}, { cacheTtlMs: 40 });
  assert(await file.verify("alice", "a"));
  assert(await file.verify("alice", "a"));
  assertEquals([file.stats.hashChecks, file.stats.cacheHits, file.cacheSize], [1, 1, 1]);
  await new Promise((resolve) => setTimeout(resolve, 80));
  assertEquals(file.cacheSize, 0);
  assert(await file.verify("alice", "a"));
  assertEquals(file.stats.hashChecks, 2);
});

Deno.test("HtpasswdFile.reload: swaps the table and wipes the cache; failure keeps old users", async () => {
  const { lines, log } = logger();
  const path = await tempFile(`alice:${shaHash("a")}\n`);
  const file = await HtpasswdFile.load(path, log);
  assert(await file.verify("alice", "a"));
  assertEquals(file.cacheSize, 1);
  await Deno.writeTextFile(path, `bob:${shaHash("b")}\n`);
  assert(await file.reload());
  assertEquals(lines.at(-1), "Reloaded htpasswd file");
  assertEquals(file.cacheSize, 0);
  assert(!(await file.verify("alice", "a")), "removed user must be rejected at once");
  assert(await file.verify("bob", "b"));
  await Deno.remove(path);
  assert(!(await file.reload()));
  assertEquals(lines.at(-1), "Could not reload htpasswd file: no such file or directory");
  assert(await file.verify("bob", "b"), "old table kept after failed reload");
});

Deno.test("HtpasswdFile.maybeReload: at most once per interval, on size or mtime change", async () => {
  const clock = fakeClock();
  const { lines, log } = logger();
  const path = await tempFile(`alice:${shaHash("a")}\n`);
  const file = await HtpasswdFile.load(path, log, { now: clock.now, reloadIntervalMs: 30_000 });
  assert(!(await file.maybeReload()), "unchanged file");
  await Deno.writeTextFile(path, `alice:${shaHash("a")}\ncarol:${shaHash("c")}\n`);
  clock.advance(29_999);
  assert(!(await file.maybeReload()), "too early");
  clock.advance(1);
  assert(await file.maybeReload(), "size changed");
  assert(await file.verify("carol", "c"));
  clock.advance(30_000);
  assert(!(await file.maybeReload()), "nothing changed since the reload");
  // Same size, new content: only the mtime tells.
  await Deno.writeTextFile(path, `alice:${shaHash("A")}\ncarol:${shaHash("c")}\n`);
  await Deno.utime(path, new Date(), new Date(Date.now() + 5000));
  assert(!(await file.maybeReload()), "interval not over");
  clock.advance(30_000);
  assert(await file.maybeReload(), "mtime changed");
  assert(await file.verify("alice", "A"));
  assert(!(await file.verify("alice", "a")));
  await Deno.remove(path);
  clock.advance(30_000);
  assert(!(await file.maybeReload()));
  assertEquals(lines.at(-1), "Could not reload htpasswd file: no such file or directory");
  assert(await file.verify("carol", "c"), "old table kept after failed stat");
});

Deno.test("HtpasswdFile.maybeReload: with a short real interval", async () => {
  const path = await tempFile(`alice:${shaHash("a")}\n`);
  const file = await HtpasswdFile.load(path, () => {}, { reloadIntervalMs: 30 });
  await Deno.writeTextFile(path, `dave:${shaHash("d")}\n`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert(await file.maybeReload());
  assert(await file.verify("dave", "d"));
  assert(!(await file.verify("alice", "a")));
});

Deno.test({
  name: "HtpasswdFile: mixed file written by htpasswd itself",
  ignore: peerMissing("htpasswd"),
  fn: async () => {
    const path = await tempFile("");
    await run("htpasswd", "-bB", "-C", "5", path, "alice", "a1");
    await run("htpasswd", "-bs", path, "bob", "b1");
    await run("htpasswd", "-bm", path, "carol", "c1");
    const file = await HtpasswdFile.load(path, () => {});
    assertEquals(file.userCount, 3);
    for (const [user, pw] of [["alice", "a1"], ["bob", "b1"], ["carol", "c1"]]) {
      assert(await file.verify(user, pw), user);
      assert(!(await file.verify(user, pw + "!")), user);
    }
  },
});
