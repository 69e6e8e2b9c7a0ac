// systemd socket activation (listen_fds.ts, fd.ts): LISTEN_FDS/LISTEN_PID parsing, and serving a
// TCP and a unix socket passed by Debian's `systemd-socket-activate` (the fixture is exec'd on
// the first connection, exactly as systemd would start it). Requests go through curl.

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { listenFds } from "../src/transport/listen_fds.ts";
import { patternBytes } from "./fixtures/echo_handler.ts";

const FIXTURE = new URL("./fixtures/fd_server.ts", import.meta.url).pathname;
const decoder = new TextDecoder();
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const missingPeers = peerMissing("systemd-socket-activate") || peerMissing("curl");

function fakeEnv(vars: Record<string, string>) {
  const map = new Map(Object.entries(vars));
  return {
    map,
    get: (key: string) => map.get(key),
    delete: (key: string) => void map.delete(key),
  };
}

Deno.test("fd: listenFds parses LISTEN_FDS/LISTEN_PID and clears them", () => {
  const pid = String(Deno.pid);
  const env = fakeEnv({ LISTEN_FDS: "2", LISTEN_PID: pid, LISTEN_FDNAMES: "a:b", OTHER: "x" });
  assertEquals(listenFds(env), [3, 4]);
  assertEquals([...env.map.keys()], ["OTHER"]);
  assertEquals(listenFds(fakeEnv({ LISTEN_FDS: "1" })), [3], "LISTEN_PID unset is accepted");
  assertEquals(listenFds(fakeEnv({ LISTEN_FDS: "1", LISTEN_PID: "1" })), [], "another pid");
  assertEquals(listenFds(fakeEnv({ LISTEN_FDS: "1", LISTEN_PID: "1" }), { checkPid: false }), [3]);
  assertEquals(listenFds(fakeEnv({})), []);
  assertEquals(listenFds(fakeEnv({ LISTEN_FDS: "0", LISTEN_PID: pid })), []);
  assertEquals(listenFds(fakeEnv({ LISTEN_FDS: "x", LISTEN_PID: pid })), []);
  const other = fakeEnv({ LISTEN_FDS: "1", LISTEN_PID: "1" });
  listenFds(other);
  assertEquals(other.map.size, 0, "cleared even when the fds are not ours");
});

interface Activated {
  child: Deno.ChildProcess;
  lines: string[];
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Runs the fixture under systemd-socket-activate listening on `address`. */
async function activate(address: string): Promise<Activated> {
  const child = new Deno.Command("systemd-socket-activate", {
    args: ["-l", address, Deno.execPath(), "run", "-A", "--quiet", FIXTURE],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pump = (async () => {
    let pending = "";
    for await (const chunk of child.stderr) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      lines.push(...parts);
    }
  })();
  const waitFor = async (pattern: RegExp, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no line matching ${pattern} in:\n${lines.join("\n")}`);
  };
  await waitFor(/Listening on/);
  return {
    child,
    lines,
    waitFor,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await pump;
    },
  };
}

interface CurlResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

async function curl(args: string[], input?: Uint8Array): Promise<CurlResult> {
  const child = new Deno.Command("curl", {
    args: ["-sS", "--max-time", "30", ...args],
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input) {
    const writer = child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: out.stdout, stderr: decoder.decode(out.stderr) };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test({
  name: "fd: TCP socket from systemd-socket-activate",
  ignore: missingPeers,
  fn: async () => {
    const port = freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = await activate(`127.0.0.1:${port}`);
    try {
      const info = await curl([`${base}/info`]);
      assertEquals(info.code, 0, info.stderr);
      const parsed = JSON.parse(decoder.decode(info.stdout));
      assertEquals(parsed.transport, "fd");
      assertMatch(parsed.remoteAddr, /^(::ffff:)?127\.0\.0\.1$/);
      assertEquals(parsed.url, `${base}/info`);
      assertMatch(await server.waitFor(/^listening /), /127\.0\.0\.1:\d+ env LISTEN_FDS=unset/);

      const upload = patternBytes(4, 5 * 1024 * 1024 + 3);
      const hash = await curl(["--data-binary", "@-", `${base}/hash`], upload);
      assertEquals(JSON.parse(decoder.decode(hash.stdout)), {
        bytes: upload.length,
        sha256: sha256(upload),
      });

      const echo = patternBytes(6, 1024 * 1024);
      const echoed = await curl(["--data-binary", "@-", `${base}/echo`], echo);
      assertEquals(sha256(echoed.stdout), sha256(echo));

      const streamed = await curl([`${base}/stream?bytes=3000000`]);
      assertEquals(sha256(streamed.stdout), sha256(patternBytes(0, 3_000_000)));

      // a rejected upload with an unread body, then more requests on the same connection
      const rejected = patternBytes(8, 2 * 1024 * 1024);
      const format = "%{http_code} %{num_connects} %{size_download}\\n";
      const chain = await curl([
        ...["--data-binary", "@-", "-o", "/dev/null", "-w", format, `${base}/reject`],
        ...["--next", "-o", "/dev/null", "-w", format, `${base}/info`],
        ...["--next", "-I", "-w", format, `${base}/head`],
      ], rejected);
      const text = decoder.decode(chain.stdout);
      const results = text.split("\n").filter((l) => /^\d{3} /.test(l));
      assertEquals(results.slice(0, 2).map((l) => l.split(" ")[0]), ["403", "200"]);
      // Whether node keeps the connection after an unread 2 MiB body depends on timing; what
      // matters is that the next request on it (or on a new one) is answered correctly.
      assert(["0", "1"].includes(results[1].split(" ")[1]), text);
      assertMatch(text, /content-length: 12345/i);
      assertEquals(results[2].split(" ").slice(0, 3), ["200", "0", "0"], "HEAD has no body");

      // a client that disconnects in the middle of an upload: the handler's body errors
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(
        new TextEncoder().encode(
          "POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123",
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      conn.close();
      assertMatch(await server.waitFor(/body error/), /aborted/);
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "fd: unix socket from systemd-socket-activate",
  ignore: missingPeers,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "stowage-fd-" });
    const socket = `${dir}/s.sock`;
    const server = await activate(socket);
    try {
      const info = await curl(["--unix-socket", socket, "http://localhost/info"]);
      assertEquals(info.code, 0, info.stderr);
      const parsed = JSON.parse(decoder.decode(info.stdout));
      assertEquals(parsed.remoteAddr, "unix");
      assertEquals(parsed.transport, "fd");

      const upload = patternBytes(9, 3 * 1024 * 1024);
      const hash = await curl(
        ["--unix-socket", socket, "--data-binary", "@-", "http://localhost/hash"],
        upload,
      );
      assertEquals(JSON.parse(decoder.decode(hash.stdout)).sha256, sha256(upload));

      const head = await curl(["--unix-socket", socket, "-I", "http://localhost/anything"]);
      assertMatch(decoder.decode(head.stdout), /content-length: 12345/i);
      const missing = await curl(
        ["--unix-socket", socket, "-o", "/dev/null", "-w", "%{http_code}", "http://localhost/x"],
      );
      assertEquals(decoder.decode(missing.stdout), "404");
      assert(server.lines.some((l) => l.startsWith("listening ")));
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
