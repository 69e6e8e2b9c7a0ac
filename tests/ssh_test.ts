// `stowage ssh` as an authorized_keys forced command behind a real OpenSSH sshd on a loopback port
// (started here with a throw-away host key and config, bounded in time, killed at the end):
// restic's rclone: backend through ssh (full cycle, append-only), a borgstore stdio client written
// here speaking HTTP/1.1 over the ssh pipes (both the borgstore and the `borg serve --rest` command
// lines), refusals (path escapes, client-supplied permissions, interactive logins, shell
// metacharacters), and permissions/quota taken from the forced command only.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { onPath, peerMissing } from "./_peers.ts";
import { MAIN, randomBytes, sha256Hex, treeSnapshot } from "./_server.ts";

const SSHD = "/usr/sbin/sshd";
const MEDIA = "application/vnd.x.borgstore.rest.v1";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Upper bound for one ssh/restic command. */
const COMMAND_TIMEOUT_MS = 60_000;
/** sshd is killed after this long even if the test hangs. */
const SSHD_LIFETIME_MS = 150_000;

const missing = peerMissing(SSHD) || peerMissing("ssh") || peerMissing("ssh-keygen");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, killed after COMMAND_TIMEOUT_MS. */
async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array } = {},
): Promise<Result> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, COMMAND_TIMEOUT_MS);
  try {
    if (options.stdin) {
      const writer = child.stdin.getWriter();
      await writer.write(options.stdin);
      await writer.close();
    }
    const out = await child.output();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface KeySpec {
  name: string;
  /** Extra flags of `stowage ssh`. */
  flags?: string[];
  /** Words put before the deno command (`HOME=@REPOS@`), run by the login shell. */
  prefix?: string;
}

interface Sshd {
  dir: string;
  repos: string;
  port: number;
  process: Deno.ChildProcess;
  /** ssh client arguments (up to and including the destination) for a key. */
  sshArgs(key: string): string[];
  stop(): Promise<void>;
}

async function startSshd(keys: KeySpec[]): Promise<Sshd> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "stowage-ssh-" }));
  const repos = `${dir}/repos`;
  await Deno.mkdir(repos);
  await Deno.mkdir("/run/sshd", { recursive: true });
  const keygen = (path: string) => run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path]);
  const generated = await Promise.all([
    keygen(`${dir}/host_key`),
    ...keys.map((k) => keygen(`${dir}/key_${k.name}`)),
  ]);
  for (const g of generated) assertEquals(g.code, 0, g.stderr);
  const lines: string[] = [];
  for (const key of keys) {
    const pub = (await Deno.readTextFile(`${dir}/key_${key.name}.pub`)).trim();
    const words = [
      ...(key.prefix ? [key.prefix.replaceAll("@REPOS@", repos)] : []),
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      MAIN,
      "ssh",
      "--root",
      repos,
      ...(key.flags ?? []),
    ];
    lines.push(`command="${words.join(" ")}",restrict ${pub}`);
  }
  await Deno.writeTextFile(`${dir}/authorized_keys`, lines.join("\n") + "\n");
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/sshd_config`,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_key`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      "StrictModes no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin yes",
      "PermitUserEnvironment no",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const process = new Deno.Command(SSHD, {
    args: ["-D", "-e", "-f", `${dir}/sshd_config`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new Response(process.stderr).text();
  const lifetime = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch { /* gone */ }
  }, SSHD_LIFETIME_MS);
  let exited = false;
  const status = process.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    clearTimeout(lifetime);
    try {
      process.kill("SIGTERM");
    } catch { /* gone */ }
    await status;
    await log;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  // wait until sshd accepts connections (bounded)
  const deadline = Date.now() + 10_000;
  while (true) {
    if (exited) {
      const text = await log;
      await stop();
      throw new Error(`sshd exited early: ${text}`);
    }
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error("sshd did not start listening within 10 s");
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    dir,
    repos,
    port,
    process,
    sshArgs: (key) => [
      "-i",
      `${dir}/key_${key}`,
      "-p",
      String(port),
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      "LogLevel=ERROR",
      "root@127.0.0.1",
    ],
    stop,
  };
}

// ---------------------------------------------------------------------------------------------
// restic

async function restic(sshd: Sshd, key: string, repo: string, args: string[]): Promise<Result> {
  const program = ["ssh", ...sshd.sshArgs(key)].join(" ");
  return await run("restic", [
    "-o",
    `rclone.program=${program}`,
    "-r",
    `rclone:${repo}`,
    "--no-cache",
    ...args,
  ], { env: { RESTIC_PASSWORD: "stowage-test-password" } });
}

/** Runs restic until a stderr line matches `pattern`, then interrupts it (SIGINT, as Ctrl-C). */
async function resticUntil(
  sshd: Sshd,
  key: string,
  repo: string,
  args: string[],
  pattern: RegExp,
): Promise<Result & { matched: boolean }> {
  const program = ["ssh", ...sshd.sshArgs(key)].join(" ");
  const child = new Deno.Command("restic", {
    args: ["-o", `rclone.program=${program}`, "-r", `rclone:${repo}`, "--no-cache", ...args],
    env: { RESTIC_PASSWORD: "stowage-test-password" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, COMMAND_TIMEOUT_MS);
  let stderr = "";
  let matched = false;
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    stderr += chunk;
    if (!matched && stderr.split("\n").some((line) => pattern.test(line))) {
      matched = true;
      child.kill("SIGINT");
    }
  }
  const status = await child.status;
  clearTimeout(timer);
  return { code: status.code, stdout: await stdout, stderr, matched };
}

async function makeTree(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/sub/deeper`, { recursive: true });
  await Deno.writeFile(`${dir}/empty`, new Uint8Array());
  await Deno.writeTextFile(`${dir}/hello.txt`, "hello over ssh\n");
  await Deno.writeFile(`${dir}/sub/big.bin`, randomBytes(3 * 1024 * 1024 + 77));
  await Deno.writeFile(`${dir}/sub/deeper/mid.bin`, randomBytes(300_000));
}

function snapshotCount(result: Result): number {
  assertEquals(result.code, 0, result.stderr);
  return (JSON.parse(result.stdout) as unknown[]).length;
}

/** The repository's files except locks (which every restic command creates and removes). */
async function repoFiles(path: string): Promise<Map<string, string>> {
  const all = await treeSnapshot(path);
  for (const name of [...all.keys()]) if (name.startsWith("locks/")) all.delete(name);
  return all;
}

// ---------------------------------------------------------------------------------------------
// A borgstore stdio client (spec §9.3), speaking HTTP/1.1 over ssh's pipes

interface BorgResponse {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
  text: string;
}

class StdioClient {
  readonly child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #stderr: Promise<string>;
  #buffer = new Uint8Array(0);
  #timer: ReturnType<typeof setTimeout>;

  constructor(cmd: string, args: string[]) {
    this.child = new Deno.Command(cmd, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#reader = this.child.stdout.getReader();
    this.#stderr = new Response(this.child.stderr).text();
    this.#timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, COMMAND_TIMEOUT_MS);
  }

  async #fill(): Promise<void> {
    const { value, done } = await this.#reader.read();
    if (done) throw new Error("EOF from the stdio server (lost connection)");
    const joined = new Uint8Array(this.#buffer.length + value.length);
    joined.set(this.#buffer);
    joined.set(value, this.#buffer.length);
    this.#buffer = joined;
  }

  async #line(): Promise<string> {
    while (true) {
      for (let i = 0; i + 1 < this.#buffer.length; i++) {
        if (this.#buffer[i] === 13 && this.#buffer[i + 1] === 10) {
          const line = decoder.decode(this.#buffer.subarray(0, i));
          this.#buffer = this.#buffer.slice(i + 2);
          return line;
        }
      }
      await this.#fill();
    }
  }

  async #exactly(n: number): Promise<Uint8Array> {
    while (this.#buffer.length < n) await this.#fill();
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.slice(n);
    return out;
  }

  /** One request, exactly as borgstore's stdio client frames it. */
  async request(
    method: string,
    target: string,
    options: { body?: Uint8Array; headers?: Record<string, string> } = {},
  ): Promise<BorgResponse> {
    const body = options.body ?? new Uint8Array();
    let head = `${method} ${target} HTTP/1.1\r\nAccept: ${MEDIA}\r\n`;
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      head += `${name}: ${value}\r\n`;
    }
    head += "Connection: keep-alive\r\n";
    if (method === "POST" || method === "DELETE") head += `Content-Length: ${body.length}\r\n`;
    head += "\r\n";
    const bytes = new Uint8Array(encoder.encode(head).length + body.length);
    bytes.set(encoder.encode(head));
    bytes.set(body, bytes.length - body.length);
    await this.#writer.write(bytes);
    const status = Number((await this.#line()).split(" ")[1]);
    const headers = new Map<string, string>();
    while (true) {
      const line = await this.#line();
      if (line === "") break;
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = method === "HEAD" ? 0 : Number(headers.get("content-length") ?? "0");
    const data = await this.#exactly(length);
    return { status, headers, body: data, text: decoder.decode(data) };
  }

  store(name: string, data: Uint8Array, hash = sha256Hex(data)): Promise<BorgResponse> {
    return this.request("POST", `/${name}`, {
      body: data,
      headers: { "X-Content-hash-sha256": hash },
    });
  }

  /** Closes stdin and waits for the remote to exit; returns ssh's status and stderr. */
  async close(): Promise<{ code: number; stderr: string; extra: number }> {
    await this.#writer.close().catch(() => {});
    let extra = this.#buffer.length;
    while (true) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      extra += value.length;
    }
    const status = await this.child.status;
    clearTimeout(this.#timer);
    return { code: status.code, stderr: await this.#stderr, extra };
  }
}

function borgClient(sshd: Sshd, key: string, remote: string[]): StdioClient {
  return new StdioClient("ssh", [...sshd.sshArgs(key), ...remote]);
}

async function expectStatus(
  pending: Promise<BorgResponse>,
  status: number,
  what: string,
): Promise<BorgResponse> {
  const response = await pending;
  assertEquals(response.status, status, `${what}: ${response.status} ${response.text}`);
  return response;
}

/** create, store, load (+ranges), list, info, move to .del and back, hash, delete, destroy. */
async function borgstoreSession(client: StdioClient, base: string): Promise<void> {
  const pack = randomBytes(200_000);
  const packName = "packs/ab/ab01cdef";
  await expectStatus(client.request("POST", "/?cmd=create"), 200, "create");
  await expectStatus(client.store(packName, pack), 200, "store nested");
  await expectStatus(client.store("config/manifest", encoder.encode("manifest")), 200, "store");
  await expectStatus(client.store("archives/empty", new Uint8Array()), 200, "store empty");
  await expectStatus(client.store("config/bad", encoder.encode("x"), "0".repeat(64)), 422, "hash");

  const whole = await expectStatus(client.request("GET", `/${packName}`), 200, "load");
  assertEquals(sha256Hex(whole.body), sha256Hex(pack));
  const range = await expectStatus(
    client.request("GET", `/${packName}`, { headers: { Range: "bytes=1000-1099" } }),
    206,
    "load range",
  );
  assertEquals(range.body, pack.slice(1000, 1100));
  const tail = await expectStatus(
    client.request("GET", `/${packName}`, { headers: { Range: "bytes=-16" } }),
    206,
    "load tail",
  );
  assertEquals(tail.body, pack.slice(pack.length - 16));
  const empty = await expectStatus(client.request("GET", "/archives/empty"), 200, "load empty");
  assertEquals(empty.body.length, 0);

  const root = await expectStatus(client.request("GET", "/"), 200, "list root");
  const rootList = JSON.parse(root.text) as { name: string; directory: boolean }[];
  assertEquals(rootList.map((e) => [e.name, e.directory]), [
    ["archives", true],
    ["config", true],
    ["packs", true],
  ]);
  const sub = await expectStatus(client.request("GET", "/packs/ab/"), 200, "list nested");
  const subList = JSON.parse(sub.text) as { name: string; size: number; atime: number }[];
  assertEquals(subList.map((e) => [e.name, e.size]), [["ab01cdef", pack.length]]);
  assert(subList[0].atime > 0, "atime is set");

  const info = await expectStatus(client.request("HEAD", `/${packName}`), 200, "info");
  assertEquals(info.headers.get("content-length"), String(pack.length));
  assertEquals(info.headers.get("x-borgstore-is-directory"), "false");
  await expectStatus(client.request("HEAD", "/packs/ab/missing"), 404, "info missing");

  const move = (from: string, to: string) =>
    client.request(
      "POST",
      `/?cmd=move&current=${encodeURIComponent(from)}&new=${encodeURIComponent(to)}`,
    );
  await expectStatus(move(packName, `${packName}.del`), 200, "soft delete");
  await expectStatus(client.request("GET", `/${packName}`), 404, "load soft-deleted");
  const listed = await expectStatus(client.request("GET", "/packs/ab/"), 200, "list .del");
  assertEquals(JSON.parse(listed.text).map((e: { name: string }) => e.name), ["ab01cdef.del"]);
  await expectStatus(move(`${packName}.del`, packName), 200, "undelete");

  const hash = await expectStatus(
    client.request("POST", `/${packName}?cmd=hash&algorithm=sha256`),
    200,
    "hash",
  );
  assertEquals(hash.text, sha256Hex(pack));

  await expectStatus(client.request("DELETE", "/config/manifest"), 200, "delete");
  await expectStatus(client.request("GET", "/config/manifest"), 404, "load deleted");
  assert((await Deno.stat(`${base}/${packName}`)).isFile, "the pack is on disk below the root");
  await expectStatus(client.request("DELETE", "/?cmd=destroy"), 200, "destroy");
  await expectStatus(client.request("GET", "/"), 410, "list after destroy");
  let gone = false;
  try {
    await Deno.stat(`${base}/packs`);
  } catch (error) {
    gone = error instanceof Deno.errors.NotFound;
  }
  assert(gone, "destroy removed the store");
}

async function expectClean(client: StdioClient): Promise<void> {
  const closed = await client.close();
  assertEquals(closed.code, 0, closed.stderr);
  assertEquals(closed.extra, 0, "nothing but responses on stdout");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `tasks` with at most `limit` in flight (sshd drops excess unauthenticated connections). */
async function limited<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }));
  return out;
}

// ---------------------------------------------------------------------------------------------

Deno.test({
  name: "ssh: forced command behind a real sshd (restic, borgstore, refusals, policy)",
  ignore: missing,
  async fn(t) {
    const sshd = await startSshd([
      { name: "plain" },
      { name: "append", flags: ["--append-only"] },
      { name: "readonly", flags: ["--permissions", "read-only"] },
      { name: "quota", flags: ["--quota", "1000"] },
      { name: "home", prefix: "HOME=@REPOS@" },
    ]);
    try {
      await runSteps(t, sshd);
    } finally {
      await sshd.stop();
    }
  },
});

async function runSteps(t: Deno.TestContext, sshd: Sshd): Promise<void> {
  const { repos, dir } = sshd;
  const hasRestic = onPath("restic");
  const resticMissing = peerMissing("restic");

  await t.step({
    name: "restic: init, backup, snapshots, check --read-data, restore, forget --prune, check",
    ignore: resticMissing,
    fn: async () => {
      const repo = `${repos}/repo1`;
      const src = `${dir}/src`;
      await makeTree(src);
      const init = await restic(sshd, "plain", repo, ["init"]);
      assertEquals(init.code, 0, init.stderr);
      assert((await Deno.stat(`${repo}/config`)).isFile, "repository lands below the root");
      const backup = await restic(sshd, "plain", repo, ["backup", src]);
      assertEquals(backup.code, 0, backup.stderr);
      assertEquals(snapshotCount(await restic(sshd, "plain", repo, ["snapshots", "--json"])), 1);
      const check = await restic(sshd, "plain", repo, ["check", "--read-data"]);
      assertEquals(check.code, 0, check.stderr + check.stdout);
      assertMatch(check.stdout, /no errors were found/);

      const target = `${dir}/restore`;
      const restore = await restic(sshd, "plain", repo, ["restore", "latest", "--target", target]);
      assertEquals(restore.code, 0, restore.stderr);
      const original = await treeSnapshot(src);
      assertEquals(await treeSnapshot(`${target}${src}`), original);
      assertEquals((await Deno.stat(`${target}${src}/empty`)).size, 0);

      await Deno.writeTextFile(`${src}/hello.txt`, "changed\n");
      const second = await restic(sshd, "plain", repo, ["backup", src]);
      assertEquals(second.code, 0, second.stderr);
      const forget = await restic(sshd, "plain", repo, ["forget", "--keep-last", "1", "--prune"]);
      assertEquals(forget.code, 0, forget.stderr);
      assertEquals(snapshotCount(await restic(sshd, "plain", repo, ["snapshots", "--json"])), 1);
      const after = await restic(sshd, "plain", repo, ["check"]);
      assertEquals(after.code, 0, after.stderr + after.stdout);
    },
  });

  await t.step({
    name: "restic: append-only key: backup works, forget --prune fails, data intact",
    ignore: resticMissing,
    fn: async () => {
      const repo = `${repos}/appendonly`;
      const src = `${dir}/src-ao`;
      await Deno.mkdir(src);
      await Deno.writeFile(`${src}/a.bin`, randomBytes(500_000));
      const init = await restic(sshd, "append", repo, ["init"]);
      assertEquals(init.code, 0, init.stderr);
      for (let i = 0; i < 2; i++) {
        await Deno.writeTextFile(`${src}/n.txt`, `run ${i}\n`);
        const backup = await restic(sshd, "append", repo, ["backup", src]);
        assertEquals(backup.code, 0, backup.stderr);
      }
      const before = await repoFiles(repo);
      // restic retries a refused delete with back-off for ~50 s; the first refusal is proof enough
      const forget = await resticUntil(
        sshd,
        "append",
        repo,
        ["forget", "--keep-last", "1", "--prune"],
        /Remove\(<snapshot\/[0-9a-f]+>\) returned error.*403/,
      );
      assert(forget.matched, `forget must be refused (403): ${forget.stderr}`);
      assert(forget.code !== 0, `forget --prune must fail in append-only mode: ${forget.stderr}`);
      const unlock = await restic(sshd, "append", repo, ["unlock"]);
      assertEquals(unlock.code, 0, unlock.stderr);
      assertEquals(await repoFiles(repo), before, "nothing but locks changed");
      assertEquals(snapshotCount(await restic(sshd, "append", repo, ["snapshots", "--json"])), 2);
      const check = await restic(sshd, "append", repo, ["check", "--read-data"]);
      assertEquals(check.code, 0, check.stderr + check.stdout);
    },
  });
  if (!hasRestic) console.log("restic not on PATH: restic steps ignored");

  await t.step("borgstore: borgstore-server-rest --stdio --backend FILE:<abs>", async () => {
    const base = `${repos}/borg1`;
    const client = borgClient(sshd, "plain", [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      `FILE:${base}`,
    ]);
    await borgstoreSession(client, base);
    await expectClean(client);
  });

  await t.step(
    "borg 2: borg serve --rest --backend FILE:<abs> (with borg's own options)",
    async () => {
      const base = `${repos}/borg2`;
      const client = borgClient(sshd, "plain", [
        "LANG=C",
        "borg",
        "serve",
        "--rest",
        "--info",
        "--lock-wait",
        "1",
        "--backend",
        `FILE:${base}`,
      ]);
      await borgstoreSession(client, base);
      await expectClean(client);
    },
  );

  await t.step(
    "relative paths (FILE:rel, FILE:~/x, rclone:rel) resolve against HOME inside the root",
    async () => {
      for (const [arg, path] of [["FILE:rel/store", "rel/store"], ["FILE:~/tilde", "tilde"]]) {
        const client = borgClient(sshd, "home", [
          "borgstore-server-rest",
          "--stdio",
          "--backend",
          arg,
        ]);
        await expectStatus(client.request("POST", "/?cmd=create"), 200, `create ${arg}`);
        await expectStatus(client.store("config/x", encoder.encode("x")), 200, `store ${arg}`);
        await expectClean(client);
        assert((await Deno.stat(`${repos}/${path}/config/x`)).isFile, `${arg} → ${path}`);
      }
      if (hasRestic) {
        const init = await restic(sshd, "home", "restic/rel", ["init"]);
        assertEquals(init.code, 0, init.stderr);
        assert((await Deno.stat(`${repos}/restic/rel/config`)).isFile, "rclone:restic/rel");
      }
    },
  );

  await t.step("refusals: escapes, client-supplied policy, logins, metacharacters", async () => {
    const outside = `${dir}/outside`;
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/keep`, "keep");
    await Deno.symlink(outside, `${repos}/escape`);
    await Deno.symlink(dir, `${repos}/up`);
    const tag = `stowage-refused-${crypto.randomUUID().slice(0, 8)}`;
    const before = await treeSnapshot(outside);
    const bs = (backend: string, ...extra: string[]) => [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      backend,
      ...extra,
    ];
    const cases: { why: string; remote: string[]; key?: string; absent: string[] }[] = [
      { why: "FILE:../..", remote: bs(`FILE:../../${tag}`), absent: [`/${tag}`] },
      { why: "FILE:/etc", remote: bs(`FILE:/etc/${tag}`), absent: [`/etc/${tag}`] },
      { why: "FILE:/etc itself", remote: bs("FILE:/etc"), absent: ["/etc/quota.hid"] },
      {
        why: "relative escape with home inside the root",
        remote: bs(`FILE:../${tag}`),
        key: "home",
        absent: [`${dir}/${tag}`],
      },
      { why: "absolute outside", remote: bs(`FILE:${outside}/x`), absent: [`${outside}/x`] },
      { why: "file:// outside", remote: bs(`file://${outside}/y`), absent: [`${outside}/y`] },
      {
        why: "symlink inside the root pointing outside",
        remote: bs(`FILE:${repos}/escape/z`),
        absent: [`${outside}/z`],
      },
      {
        why: "symlink to the root's parent",
        remote: bs(`FILE:${repos}/up/${tag}`),
        absent: [`${dir}/${tag}`],
      },
      { why: "the root itself", remote: bs(`FILE:${repos}`), absent: [`${repos}/quota.hid`] },
      { why: "~root", remote: bs(`FILE:~root/${tag}`), absent: [`/root/${tag}`] },
      { why: "~ (HOME=/root)", remote: bs(`FILE:~/${tag}`), absent: [`/root/${tag}`] },
      {
        why: "restic ~root",
        remote: ["serve", "restic", "--stdio", `~root/${tag}`],
        absent: [`/root/${tag}`],
      },
      {
        why: "restic path outside",
        remote: ["rclone", "serve", "restic", "--stdio", `${outside}/r`],
        absent: [`${outside}/r`],
      },
      {
        why: "client --permissions all",
        remote: bs(`FILE:${repos}/p1`, "--permissions", "all"),
        absent: [`${repos}/p1`],
      },
      {
        why: "client --quota",
        remote: bs(`FILE:${repos}/p2`, "--quota", "999999999"),
        absent: [`${repos}/p2`],
      },
      {
        why: "borg serve client --permissions all",
        remote: [
          "borg",
          "serve",
          "--rest",
          "--permissions",
          "all",
          "--backend",
          `FILE:${repos}/p3`,
        ],
        absent: [`${repos}/p3`],
      },
      {
        why: "borg serve client --restrict-to-path /",
        remote: [
          "borg",
          "serve",
          "--rest",
          "--restrict-to-path",
          "/",
          "--backend",
          `FILE:${repos}/p4`,
        ],
        absent: [`${repos}/p4`],
      },
      {
        why: "restic client --append-only",
        remote: ["serve", "restic", "--stdio", "--append-only", `${repos}/p5`],
        absent: [`${repos}/p5`],
      },
      {
        why: "; touch",
        remote: [`borgstore-server-rest --stdio --backend FILE:${repos}/m1; touch ${dir}/pwned1`],
        absent: [`${dir}/pwned1`, `${repos}/m1`],
      },
      {
        why: "$( )",
        remote: [`borgstore-server-rest --stdio --backend FILE:${repos}/$(touch ${dir}/pwned2)`],
        absent: [`${dir}/pwned2`],
      },
      {
        why: "backticks",
        remote: [`serve restic --stdio ${repos}/\`touch ${dir}/pwned3\``],
        absent: [`${dir}/pwned3`],
      },
      {
        why: "&& and |",
        remote: [`borg serve --rest --backend FILE:${repos}/m4 && touch ${dir}/pwned4 | cat`],
        absent: [`${dir}/pwned4`, `${repos}/m4`],
      },
      { why: "other program", remote: ["sh", "-c", `touch ${dir}/pwned5`], absent: [] },
      { why: "stowage ssh itself", remote: ["stowage", "ssh", "--root", "/"], absent: [] },
      { why: "serve (TCP server)", remote: ["stowage", "serve", "--path", outside], absent: [] },
      { why: "interactive login", remote: [], absent: [] },
    ];
    const results = await limited(
      4,
      cases.map((c) => () => run("ssh", [...sshd.sshArgs(c.key ?? "plain"), ...c.remote])),
    );
    for (const [i, c] of cases.entries()) {
      const r = results[i];
      assert(r.code !== 0 && r.code !== 255, `${c.why}: exit ${r.code} (${r.stderr})`);
      // lines of the account's own shell start-up (e.g. a pyenv hook in ~/.bashrc, which bash
      // reads for ssh commands) are not stowage's: only stowage's lines are counted
      const lines = r.stderr.split("\n").filter((l) => /^(error|warning):|stowage/i.test(l));
      assertEquals(lines.length, 1, `${c.why}: one stderr line, got ${JSON.stringify(r.stderr)}`);
      assertMatch(lines[0], /refused/, c.why);
      assertEquals(r.stdout, "", `${c.why}: nothing on stdout`);
      for (const path of c.absent) assert(!(await exists(path)), `${c.why}: ${path} was created`);
    }
    for (let i = 1; i <= 5; i++) assert(!(await exists(`${dir}/pwned${i}`)), `pwned${i}`);
    assertEquals(await treeSnapshot(outside), before, "nothing changed outside the root");
  });

  await t.step("--permissions read-only from the forced command: load yes, store 403", async () => {
    const base = `${repos}/ro`;
    const owner = borgClient(sshd, "plain", [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      `FILE:${base}`,
    ]);
    await expectStatus(owner.request("POST", "/?cmd=create"), 200, "create");
    await expectStatus(owner.store("packs/aa/one", encoder.encode("one")), 200, "store");
    await expectClean(owner);
    const reader = borgClient(sshd, "readonly", [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      `FILE:${base}`,
    ]);
    const loaded = await expectStatus(reader.request("GET", "/packs/aa/one"), 200, "load");
    assertEquals(loaded.text, "one");
    await expectStatus(reader.request("GET", "/packs/aa/"), 200, "list");
    await expectStatus(reader.store("packs/aa/two", encoder.encode("two")), 403, "store");
    await expectStatus(reader.request("DELETE", "/packs/aa/one"), 403, "delete");
    await expectStatus(reader.request("DELETE", "/?cmd=destroy"), 403, "destroy");
    await expectClean(reader);
    assert(!(await exists(`${base}/packs/aa/two`)), "nothing stored");
    assert(await exists(`${base}/packs/aa/one`), "nothing deleted");
  });

  await t.step({
    name: "restic: --permissions read-only key reads but cannot write or delete",
    ignore: resticMissing,
    fn: async () => {
      const repo = `${repos}/repo1`; // created and filled by the first restic step
      const snapshots = await restic(sshd, "readonly", repo, ["snapshots", "--json"]);
      assertEquals(snapshots.code, 0, snapshots.stderr);
      const before = await treeSnapshot(repo);
      const fresh = await restic(sshd, "readonly", `${repos}/ro-restic`, ["init"]);
      assert(fresh.code !== 0, "init must be refused");
      assert(!(await exists(`${repos}/ro-restic/config`)), "no repository was created");
      await Deno.writeTextFile(`${dir}/ro-new.txt`, "new data for a read-only key\n");
      const backup = await resticUntil(
        sshd,
        "readonly",
        repo,
        ["backup", `${dir}/ro-new.txt`],
        /403|Forbidden/i,
      );
      assert(backup.code !== 0, "a backup through a read-only key must fail");
      const after = await treeSnapshot(repo);
      for (const [name, hash] of before) {
        if (!name.startsWith("locks/")) assertEquals(after.get(name), hash, name);
      }
    },
  });

  await t.step("--append-only (borg: no-delete) from the forced command: delete 403", async () => {
    const base = `${repos}/ao-borg`;
    const owner = borgClient(sshd, "plain", [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      `FILE:${base}`,
    ]);
    await expectStatus(owner.request("POST", "/?cmd=create"), 200, "create");
    await expectClean(owner);
    const client = borgClient(sshd, "append", [
      "borg",
      "serve",
      "--rest",
      "--backend",
      `FILE:${base}`,
    ]);
    await expectStatus(client.store("packs/bb/one", encoder.encode("one")), 200, "store");
    await expectStatus(client.request("DELETE", "/packs/bb/one"), 403, "delete");
    await expectClean(client);
  });

  await t.step("--quota 1000 from the forced command: a 2000-byte store gets 507", async () => {
    const base = `${repos}/quota`;
    const client = borgClient(sshd, "quota", [
      "borgstore-server-rest",
      "--stdio",
      "--backend",
      `FILE:${base}`,
    ]);
    await expectStatus(client.request("POST", "/?cmd=create"), 200, "create");
    await expectStatus(client.store("packs/cc/big", randomBytes(2000)), 507, "over quota");
    await expectStatus(client.store("packs/cc/small", randomBytes(600)), 200, "within quota");
    const quota = await expectStatus(client.request("POST", "/?cmd=quota"), 200, "quota");
    assertEquals(JSON.parse(quota.text), { limit: 1000, usage: 600 });
    await expectClean(client);
    assert(!(await exists(`${base}/packs/cc/big`)), "the refused item was not written");
  });
}
