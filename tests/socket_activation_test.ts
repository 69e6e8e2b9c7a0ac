// systemd socket activation with Debian's `systemd-socket-activate` (no running systemd needed):
// the restic server (`stowage serve`) on an inherited TCP and unix socket, the borgstore
// personality with `--socket-activation` on a unix socket (spec §15.13 items 136, 137), and the
// example units in scripts/systemd/: required keys, `systemd-analyze verify` (on copies whose
// ExecStart binary exists), and their ExecStart command lines run for real under
// systemd-socket-activate with paths moved into a temp dir.

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { MAIN, runStowage } from "./_server.ts";

const ACTIVATE = "systemd-socket-activate";
const UNITS = new URL("../scripts/systemd/", import.meta.url).pathname;
const BORG_MEDIA = "application/vnd.x.borgstore.rest.v1";
const RESTIC_V2 = "application/vnd.x.restic.rest.v2";
const decoder = new TextDecoder();
const TIMEOUT_MS = 20_000;

const missing = peerMissing(ACTIVATE) || peerMissing("curl");

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface Activated {
  process: Deno.ChildProcess;
  lines: string[];
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then the exit code (bounded). */
  stop(): Promise<number>;
}

/** `systemd-socket-activate -l A [-l B …] <deno> run -A --quiet main.ts <args>` (bounded). */
async function activate(listen: string[], args: string[]): Promise<Activated> {
  const process = new Deno.Command(ACTIVATE, {
    args: [
      ...listen.flatMap((l) => ["-l", l]),
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      MAIN,
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const pump = (async () => {
    let pending = "";
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  })();
  const killer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch { /* gone */ }
  }, 60_000);
  const waitForLine = (pattern: RegExp, timeoutMs = TIMEOUT_MS) => {
    const found = lines.find((l) => pattern.test(l));
    if (found) return Promise.resolve(found);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no line ${pattern} within ${timeoutMs} ms:\n${lines.join("\n")}`)),
        timeoutMs,
      );
      waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  };
  const activated: Activated = {
    process,
    lines,
    waitForLine,
    async stop() {
      try {
        process.kill("SIGTERM");
      } catch { /* gone */ }
      const status = await process.status;
      clearTimeout(killer);
      await pump;
      return status.code;
    },
  };
  try {
    // systemd-socket-activate reports each socket, then waits for the first connection
    await waitForLine(/^Listening on /);
    const deadline = Date.now() + TIMEOUT_MS;
    while (lines.filter((l) => /^Listening on .* as \d+\.$/.test(l)).length < listen.length) {
      if (Date.now() > deadline) throw new Error(`not listening:\n${lines.join("\n")}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (error) {
    await activated.stop();
    throw error;
  }
  return activated;
}

interface CurlResult {
  status: number;
  body: string;
}

/** One request with curl (fresh connection each time), over TCP or `unix`. */
async function curl(
  method: string,
  url: string,
  options: { unix?: string; headers?: Record<string, string>; body?: string; user?: string } = {},
): Promise<CurlResult> {
  const args = ["-s", "-S", "--max-time", "15", "-X", method, "-w", "\n%{http_code}"];
  if (method === "HEAD") args.splice(args.indexOf("-X"), 2, "-I");
  if (options.unix) args.push("--unix-socket", options.unix);
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    args.push("-H", `${name}: ${value}`);
  }
  if (options.body !== undefined) args.push("--data-binary", options.body);
  else if (method === "POST" || method === "DELETE") args.push("-H", "Content-Length: 0");
  if (options.user) args.push("-u", options.user);
  args.push(url);
  const out = await new Deno.Command("curl", { args, stdout: "piped", stderr: "piped" }).output();
  const text = decoder.decode(out.stdout);
  assertEquals(out.code, 0, `curl ${method} ${url}: ${decoder.decode(out.stderr)}`);
  const nl = text.lastIndexOf("\n");
  return { status: Number(text.slice(nl + 1)), body: text.slice(0, nl) };
}

async function tempDir(): Promise<string> {
  return await Deno.realPath(await Deno.makeTempDir({ prefix: "stowage-sa-" }));
}

/** restic REST basics on one repository: create, config up/down, v2 key listing. */
async function resticRoundTrip(base: string, options: { unix?: string; user?: string } = {}) {
  const created = await curl("POST", `${base}/r1/?create=true`, options);
  assertEquals(created.status, 200, created.body);
  const config = await curl("POST", `${base}/r1/config`, { ...options, body: "cfg" });
  assertEquals(config.status, 200, config.body);
  const got = await curl("GET", `${base}/r1/config`, options);
  assertEquals([got.status, got.body], [200, "cfg"]);
  const keys = await curl("GET", `${base}/r1/keys/`, {
    ...options,
    headers: { Accept: RESTIC_V2 },
  });
  assertEquals([keys.status, JSON.parse(keys.body)], [200, []]);
}

// ---------------------------------------------------------------------------------------------

Deno.test({
  name: "socket activation: serve on an inherited TCP socket; SIGTERM → exit 0",
  ignore: missing,
  async fn() {
    const dir = await tempDir();
    try {
      const port = freePort();
      const server = await activate([`127.0.0.1:${port}`], [
        "serve",
        "--path",
        `${dir}/data`,
        "--no-auth",
      ]);
      try {
        await resticRoundTrip(`http://127.0.0.1:${port}`);
        await server.waitForLine(/systemd socket activation mode \(127\.0\.0\.1:\d+\)/);
      } finally {
        assertEquals(await server.stop(), 0, server.lines.join("\n"));
      }
      assertEquals(await Deno.readTextFile(`${dir}/data/r1/config`), "cfg");
      assert(server.lines.some((l) => /shutdown cleanly/.test(l)), server.lines.join("\n"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "socket activation: serve on an inherited unix socket; SIGTERM → exit 0",
  ignore: missing,
  async fn() {
    const dir = await tempDir();
    try {
      const socket = `${dir}/s.sock`;
      const server = await activate([socket], ["serve", "--path", `${dir}/data`, "--no-auth"]);
      try {
        await resticRoundTrip("http://localhost", { unix: socket });
        await server.waitForLine(/systemd socket activation mode/);
      } finally {
        assertEquals(await server.stop(), 0, server.lines.join("\n"));
      }
      assertEquals(await Deno.readTextFile(`${dir}/data/r1/config`), "cfg");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "socket activation: 136: borgstore-server-rest --socket-activation on a unix socket",
  ignore: missing,
  async fn() {
    const dir = await tempDir();
    try {
      const socket = `${dir}/b.sock`;
      const server = await activate([socket], [
        "borgstore-server-rest",
        "--socket-activation",
        "--backend",
        `file://${dir}/store`,
      ]);
      try {
        const headers = { Accept: BORG_MEDIA };
        const created = await curl("POST", "http://localhost/?cmd=create", {
          unix: socket,
          headers,
        });
        assertEquals(created.status, 200, created.body);
        const stored = await curl("POST", "http://localhost/config/x", {
          unix: socket,
          headers,
          body: "hello",
        });
        assertEquals(stored.status, 200, stored.body);
        const listed = await curl("GET", "http://localhost/config/", { unix: socket, headers });
        assertEquals(JSON.parse(listed.body).map((e: { name: string }) => e.name), ["x"]);
        await server.waitForLine(/^BorgStore REST server using systemd-activated socket on /);
        // the access log names unix clients `unix`
        await server.waitForLine(/^unix - - \[.*\] "POST \/\?cmd=create HTTP\/1\.1" 200 -$/);
      } finally {
        assertEquals(await server.stop(), 0, server.lines.join("\n"));
      }
      assertEquals(await Deno.readTextFile(`${dir}/store/config/x`), "hello");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("socket activation: 137: --socket-activation without LISTEN_FDS (or ≠ 1) fails", async () => {
  const dir = await tempDir();
  try {
    const args = ["borgstore-server-rest", "--socket-activation", "--backend", `file://${dir}/s`];
    const unset = await runStowage(args);
    assert(unset.code !== 0, "non-zero exit");
    assertMatch(
      unset.stderr,
      /--socket-activation was requested but no sockets were passed by systemd \(LISTEN_FDS not set or 0\)/,
    );
    const zero = await runStowage(args, { env: { LISTEN_FDS: "0" } });
    assert(zero.code !== 0, "non-zero exit");
    assertMatch(zero.stderr, /no sockets were passed by systemd/);
    const two = await runStowage(args, { env: { LISTEN_FDS: "2" } });
    assert(two.code !== 0, "non-zero exit");
    assertMatch(two.stderr, /--socket-activation expects exactly 1 socket from systemd, got 2/);
    // not a count at all: refused like an unset LISTEN_FDS (it used to pass the count check and
    // then serve an fd that listenFds did not return)
    const garbage = await runStowage(args, { env: { LISTEN_FDS: "1e0" } });
    assert(garbage.code !== 0, "non-zero exit");
    assertMatch(garbage.stderr, /no sockets were passed by systemd/);
    assertEquals(unset.stdout + zero.stdout + two.stdout + garbage.stdout, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// scripts/systemd/

type Unit = Map<string, Map<string, string[]>>;

/** A small unit-file parser: sections, `Key=value` (repeatable), comments, no continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | null = null;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    assert(!line.endsWith("\\"), `line ${i + 1}: no continuation lines`);
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf("=");
    assert(section !== null && eq > 0, `line ${i + 1} is not Key=value: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

async function readUnit(name: string): Promise<Unit> {
  return parseUnit(await Deno.readTextFile(`${UNITS}${name}`));
}

function value(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key);
  assert(values !== undefined && values.length > 0, `[${section}] ${key} is set`);
  return values[values.length - 1];
}

const HARDENING: [string, string][] = [
  ["NoNewPrivileges", "yes"],
  ["ProtectSystem", "strict"],
  ["ProtectHome", "yes"],
  ["PrivateTmp", "yes"],
  ["PrivateDevices", "yes"],
  ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
  ["SystemCallFilter", "@system-service"],
  ["UMask", "0077"],
  ["User", "stowage"],
];

/** ExecStart as words, with the binary and the system paths moved into `root`. */
function execWords(exec: string, root: string, instance = ""): string[] {
  const words = exec.replaceAll("%i", instance).split(/\s+/);
  assertEquals(words[0], "/usr/local/bin/stowage");
  return words.slice(1).map((w) =>
    w.replace(
      /^(file:\/\/)?\/(srv|etc)\//,
      (_all, scheme: string | undefined, top: string) => `${scheme ?? ""}${root}/${top}/`,
    )
  );
}

Deno.test("systemd units: required keys and hardening", async () => {
  const socket = await readUnit("stowage.socket");
  assertEquals(value(socket, "Socket", "ListenStream"), "8000");
  assertEquals(value(socket, "Install", "WantedBy"), "sockets.target");

  const service = await readUnit("stowage.service");
  for (const [key, expected] of HARDENING) assertEquals(value(service, "Service", key), expected);
  assertEquals(value(service, "Service", "ReadWritePaths"), "/srv/stowage");
  assertEquals(value(service, "Unit", "Requires"), "stowage.socket");
  assertMatch(
    value(service, "Service", "ExecStart"),
    /^\/usr\/local\/bin\/stowage serve --path \/srv\/stowage --htpasswd-file \/etc\/stowage\/htpasswd( |$)/,
  );

  const borgSocket = await readUnit("stowage-borg@.socket");
  assertEquals(value(borgSocket, "Socket", "ListenStream"), "/run/stowage/%i.sock");
  assertEquals(value(borgSocket, "Socket", "SocketMode"), "0660");
  assertEquals(value(borgSocket, "Socket", "Accept"), "no");

  const borgService = await readUnit("stowage-borg@.service");
  for (const [key, expected] of HARDENING) {
    assertEquals(value(borgService, "Service", key), expected);
  }
  assertEquals(value(borgService, "Service", "ReadWritePaths"), "/srv/borg");
  assertEquals(value(borgService, "Unit", "Requires"), "stowage-borg@%i.socket");
  assertMatch(
    value(borgService, "Service", "ExecStart"),
    /^\/usr\/local\/bin\/stowage borgstore-server-rest --socket-activation --backend file:\/\/\/srv\/borg\/%i --username \S+ --password-file \/etc\/stowage\/%i\.password$/,
  );
});

Deno.test({
  name: "systemd units: systemd-analyze verify (ExecStart binary replaced by one that exists)",
  ignore: peerMissing("systemd-analyze"),
  async fn() {
    const dir = await tempDir();
    try {
      for await (const entry of Deno.readDir(UNITS)) {
        const text = await Deno.readTextFile(`${UNITS}${entry.name}`);
        await Deno.writeTextFile(
          `${dir}/${entry.name.replace("@.", "@alice.")}`,
          text.replaceAll("/usr/local/bin/stowage", Deno.execPath()),
        );
      }
      for (
        const pair of [["stowage.socket", "stowage.service"], [
          "stowage-borg@alice.socket",
          "stowage-borg@alice.service",
        ]]
      ) {
        const out = await new Deno.Command("systemd-analyze", {
          args: ["verify", ...pair.map((name) => `${dir}/${name}`)],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const messages = decoder.decode(out.stdout) + decoder.decode(out.stderr);
        assertEquals(out.code, 0, messages);
        assertEquals(messages.trim(), "", `no warnings for ${pair.join(" ")}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "systemd units: stowage.service's ExecStart under activation (TCP + unix): auth required",
  ignore: missing,
  async fn() {
    const root = await tempDir();
    try {
      const service = await readUnit("stowage.service");
      const args = execWords(value(service, "Service", "ExecStart"), root);
      await Deno.mkdir(`${root}/srv/stowage`, { recursive: true });
      await Deno.mkdir(`${root}/etc/stowage`, { recursive: true });
      const sha1 = createHash("sha1").update("s3cret").digest("base64");
      await Deno.writeTextFile(`${root}/etc/stowage/htpasswd`, `alice:{SHA}${sha1}\n`);
      const port = freePort();
      const socket = `${root}/stowage.sock`;
      const server = await activate([`127.0.0.1:${port}`, socket], args);
      try {
        const tcp = `http://127.0.0.1:${port}`;
        assertEquals((await curl("GET", `${tcp}/r1/config`)).status, 401);
        // a unix socket is no exception: credentials are still required
        assertEquals(
          (await curl("GET", "http://localhost/r1/config", { unix: socket })).status,
          401,
        );
        await resticRoundTrip(tcp, { user: "alice:s3cret" });
        const viaUnix = await curl("GET", "http://localhost/r1/config", {
          unix: socket,
          user: "alice:s3cret",
        });
        assertEquals([viaUnix.status, viaUnix.body], [200, "cfg"]);
        await server.waitForLine(/systemd socket activation mode/);
      } finally {
        assertEquals(await server.stop(), 0, server.lines.join("\n"));
      }
      assertEquals(await Deno.readTextFile(`${root}/srv/stowage/r1/config`), "cfg");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "systemd units: stowage-borg@.service's ExecStart on stowage-borg@.socket's path",
  ignore: missing,
  async fn() {
    const root = await tempDir();
    try {
      const service = await readUnit("stowage-borg@.service");
      const socketUnit = await readUnit("stowage-borg@.socket");
      const args = execWords(value(service, "Service", "ExecStart"), root, "alice");
      const socket = root + value(socketUnit, "Socket", "ListenStream").replaceAll("%i", "alice");
      await Deno.mkdir(`${root}/run/stowage`, { recursive: true });
      await Deno.mkdir(`${root}/srv/borg`, { recursive: true });
      await Deno.mkdir(`${root}/etc/stowage`, { recursive: true });
      await Deno.writeTextFile(`${root}/etc/stowage/alice.password`, "pa55word\n");
      const server = await activate([socket], args);
      try {
        const headers = { Accept: BORG_MEDIA };
        const anonymous = await curl("POST", "http://localhost/?cmd=create", {
          unix: socket,
          headers,
        });
        assertEquals(anonymous.status, 401);
        const created = await curl("POST", "http://localhost/?cmd=create", {
          unix: socket,
          headers,
          user: "alice:pa55word",
        });
        assertEquals(created.status, 200, created.body);
        await server.waitForLine(/^BorgStore REST server using systemd-activated socket on /);
      } finally {
        assertEquals(await server.stop(), 0, server.lines.join("\n"));
      }
      assert((await Deno.stat(`${root}/srv/borg/alice`)).isDirectory, "store created");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
