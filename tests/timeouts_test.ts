// Connection timeouts, black-box against `stowage serve` (plain TCP and TLS) and the
// borgstore-server-rest personality, with short timeouts: a request head that does not arrive
// in time gets 408 (plain) or a closed connection (TLS), idle keep-alive connections and stalled
// uploads are closed after the idle time, and an upload that keeps moving is never cut, however
// long it takes. Both timeouts at 0 fall back to Deno.serve with no timeouts at all.

import net from "node:net";
import tls from "node:tls";
import http2 from "node:http2";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import { runStowage, sha256Hex, spawnStowage, treeSnapshot, withStowage } from "./_server.ts";
import { stalledBy } from "../src/transport/timeouts.ts";

const HEADER = "1s";
const IDLE = "2s";
const BODY = "aaaaaaaaaaaa"; // 12 bytes
const ID = sha256Hex(BODY);

interface Trickle {
  chunk: string;
  everyMs: number;
  count: number;
}

interface ProbeResult {
  /** Status lines of the responses received, in order. */
  statuses: number[];
  /** Milliseconds until the server closed the connection; null if it stayed open. */
  closedAfterMs: number | null;
}

/**
 * Opens a connection, sends `first`, then `trickle` bytes (if any), then `second` after the
 * first response, and watches for `watchMs` whether and when the server closes it.
 */
function probe(
  port: number,
  options: { secure?: boolean; first: string; trickle?: Trickle; second?: string; watchMs: number },
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const statuses: number[] = [];
    let closedAfterMs: number | null = null;
    const socket: net.Socket = options.secure
      ? tls.connect({
        port,
        host: "127.0.0.1",
        rejectUnauthorized: false,
        ALPNProtocols: ["http/1.1"],
      })
      : net.connect(port, "127.0.0.1");
    let timer: ReturnType<typeof setInterval> | undefined;
    socket.once(options.secure ? "secureConnect" : "connect", () => {
      if (options.first) socket.write(options.first);
      const trickle = options.trickle;
      if (trickle) {
        let sent = 0;
        timer = setInterval(() => {
          if (socket.destroyed || sent >= trickle.count) return clearInterval(timer);
          socket.write(trickle.chunk);
          sent++;
        }, trickle.everyMs);
      }
    });
    socket.on("data", (data: Uint8Array) => {
      for (const match of new TextDecoder().decode(data).matchAll(/HTTP\/1\.1 (\d{3})/g)) {
        statuses.push(Number(match[1]));
        if (statuses.length === 1 && options.second) {
          const second = options.second;
          setTimeout(() => socket.destroyed || socket.write(second), 300);
        }
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => (closedAfterMs ??= Date.now() - started));
    setTimeout(() => {
      clearInterval(timer);
      socket.destroy();
      resolve({ statuses, closedAfterMs });
    }, options.watchMs);
  });
}

const upload = (body = "") =>
  `POST /r/data/${ID} HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n${body}`;
const slowUpload: Trickle = { chunk: "a", everyMs: 500, count: 12 }; // 6 s, longer than IDLE

async function createRepo(url: string): Promise<void> {
  const response = await fetch(`${url}/r/?create=true`, { method: "POST" });
  assertEquals(response.status, 200);
  await response.body?.cancel();
}

async function storedIds(dir: string): Promise<string[]> {
  const names = [...(await treeSnapshot(dir)).keys()];
  assert(!names.some((n) => n.includes("stowage-tmp")), `temp file left: ${names}`);
  return names.map((n) => n.split("/").pop()!).filter((n) => /^[0-9a-f]{64}$/.test(n));
}

/** The probes every listener must pass; `secure` selects TLS. */
async function probeAll(port: number, secure: boolean) {
  const [nothing, partial, trickledHead, idle, stalled, slow, stalledSecond] = await Promise.all([
    probe(port, { secure, first: "", watchMs: 4500 }),
    probe(port, { secure, first: "GET /health HTTP/1.1\r\nHost: x\r\n", watchMs: 4500 }),
    probe(port, {
      secure,
      first: "GET /health HTTP/1.1\r\n",
      trickle: { chunk: "X-A: b\r\n", everyMs: 300, count: 30 },
      watchMs: 4500,
    }),
    probe(port, { secure, first: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", watchMs: 4500 }),
    probe(port, { secure, first: upload("aaa"), watchMs: 4500 }),
    probe(port, { secure, first: upload(), trickle: slowUpload, watchMs: 7500 }),
    probe(port, {
      secure,
      first: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
      second: upload("aaa"),
      watchMs: 5000,
    }),
  ]);
  return { nothing, partial, trickledHead, idle, stalled, slow, stalledSecond };
}

function closedWithin(result: ProbeResult, fromMs: number, toMs: number, what: string): void {
  assert(result.closedAfterMs !== null, `${what}: connection stayed open`);
  assert(
    result.closedAfterMs >= fromMs && result.closedAfterMs <= toMs,
    `${what}: closed after ${result.closedAfterMs} ms, expected ${fromMs}–${toMs} ms`,
  );
}

/** The rules every listener keeps; `slowHeadStatuses` is what a too slow head gets back. */
function checkListenerRules(r: Awaited<ReturnType<typeof probeAll>>, slowHeadStatuses: number[]) {
  const slowHeads = [["nothing", r.nothing], ["partial head", r.partial], [
    "trickled head",
    r.trickledHead,
  ]] as const;
  for (const [what, result] of slowHeads) {
    assertEquals(result.statuses, slowHeadStatuses, what);
    closedWithin(result, 900, 2800, what);
  }
  assertEquals(r.idle.statuses, [200]);
  closedWithin(r.idle, 1900, 3500, "idle keep-alive");
  assertEquals(r.stalled.statuses, []);
  closedWithin(r.stalled, 1900, 3500, "stalled upload");
  assertEquals(r.stalledSecond.statuses, [200]);
  closedWithin(r.stalledSecond, 2100, 4000, "stalled upload on a kept-alive connection");
  // 12 bytes over 6 s, three times the idle timeout: stored
  assertEquals(r.slow.statuses, [200]);
}

Deno.test("timeouts: plain TCP: 408 for slow heads, idle and stalled connections closed, slow uploads kept", () =>
  withStowage(
    ["--no-auth", "--read-header-timeout", HEADER, "--idle-timeout", IDLE],
    async (server, dir) => {
      await createRepo(server.url);
      checkListenerRules(await probeAll(server.port, false), [408]);
      assertEquals(await storedIds(dir), [ID]);
    },
  ));

Deno.test({
  name: "timeouts: TLS (HTTP/1.1 and HTTP/2) follows the same rules",
  ignore: peerMissing("openssl"),
  fn: () =>
    withStowage(
      ["--no-auth", "--tls", "--read-header-timeout", HEADER, "--idle-timeout", IDLE],
      async (server, dir) => {
        const h2 = http2Probe(`https://127.0.0.1:${server.port}`);
        // TLS: no 408, the connection is closed (the head may be unreadable garbage)
        checkListenerRules(await probeAll(server.port, true), []);
        const streams = await h2;
        assertEquals(streams.firstStatus, 200);
        assert(
          streams.stalledClosedMs !== null && streams.stalledClosedMs >= 1900 &&
            streams.stalledClosedMs <= 3500,
          `HTTP/2 stalled stream closed after ${streams.stalledClosedMs} ms`,
        );
        assert(
          streams.idleGoawayMs !== null && streams.idleGoawayMs >= 1900 &&
            streams.idleGoawayMs <= 3500,
          `idle HTTP/2 session: GOAWAY after ${streams.idleGoawayMs} ms`,
        );
        assertEquals(await storedIds(dir), [ID]);
      },
      makeCertificate,
    ),
});

/** A self-signed certificate where `stowage serve --tls` looks by default. */
async function makeCertificate(dir: string): Promise<void> {
  const made = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/private_key`,
      "-out",
      `${dir}/public_key`,
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  assertEquals(made.code, 0);
}

/** HTTP/2: an idle session gets GOAWAY; a stream whose upload stalls is cancelled. */
async function http2Probe(url: string) {
  const started = Date.now();
  const idle = http2.connect(url, { rejectUnauthorized: false });
  const busy = http2.connect(url, { rejectUnauthorized: false });
  idle.on("error", () => {});
  busy.on("error", () => {});
  let idleGoawayMs: number | null = null;
  idle.on("goaway", () => (idleGoawayMs ??= Date.now() - started));
  idle.on("close", () => (idleGoawayMs ??= Date.now() - started));
  const firstStatus = await new Promise<number>((resolve) => {
    const request = idle.request({ ":path": "/health" });
    request.on("response", (headers) => resolve(Number(headers[":status"])));
    request.on("error", () => resolve(0));
    request.resume();
    request.end();
  });
  const stalledClosedMs = await new Promise<number | null>((resolve) => {
    const request = busy.request({
      ":path": `/r/data/${ID}`,
      ":method": "POST",
      "content-length": "12",
    });
    request.on("error", () => {});
    request.on("close", () => resolve(Date.now() - started));
    request.write("aaa");
    setTimeout(() => resolve(null), 5000);
  });
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 4000 - (Date.now() - started))));
  idle.destroy();
  busy.destroy();
  return { firstStatus, stalledClosedMs, idleGoawayMs };
}

Deno.test("timeouts: both at 0 keep slow heads and idle connections open (Deno.serve)", () =>
  withStowage(
    ["--no-auth", "--read-header-timeout", "0", "--idle-timeout", "0"],
    async (server) => {
      const [partial, idle] = await Promise.all([
        probe(server.port, { first: "GET /health HTTP/1.1\r\nHost: x\r\n", watchMs: 3000 }),
        probe(server.port, { first: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", watchMs: 3000 }),
      ]);
      assertEquals(partial, { statuses: [], closedAfterMs: null });
      assertEquals(idle, { statuses: [200], closedAfterMs: null });
    },
  ));

Deno.test("timeouts: the borgstore-server-rest personality has them too", async () => {
  const dir = await Deno.makeTempDir();
  const server = await spawnStowage(
    [
      "borgstore-server-rest",
      "--backend",
      `file://${dir}/store`,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--read-header-timeout",
      HEADER,
      "--idle-timeout",
      IDLE,
    ],
    { ready: /listening on/ },
  );
  const port = Number(/:(\d+)$/.exec(await server.waitForLine(/listening on/))![1]);
  try {
    const [partial, idle] = await Promise.all([
      probe(port, { first: "GET / HTTP/1.1\r\nHost: x\r\n", watchMs: 4000 }),
      probe(port, { first: "GET /?cmd=info HTTP/1.1\r\nHost: x\r\n\r\n", watchMs: 4000 }),
    ]);
    assertEquals(partial.statuses, [408]);
    closedWithin(partial, 900, 2500, "partial head");
    assertEquals(idle.statuses.length, 1);
    closedWithin(idle, 1900, 3500, "idle keep-alive");
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("timeouts: bad durations are usage errors; config file and STOWAGE_* accept them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const args of [["--idle-timeout", "soon"], ["--read-header-timeout", "-5s"], [
        "--idle-timeout",
        "10",
      ]]
    ) {
      const result = await runStowage(["--path", dir, "--no-auth", ...args]);
      assertEquals(result.code, 2, args.join(" "));
      assertMatch(result.stderr, /expected a duration like 30s, 10m or 0/);
    }
    const borg = await runStowage([
      "borgstore-server-rest",
      "--backend",
      `file://${dir}/b`,
      "--idle-timeout",
      "x",
    ]);
    assertEquals(borg.code, 2);
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({
        path: dir,
        "no-auth": true,
        "idle-timeout": "1s",
        "read-header-timeout": "1s",
      }),
    );
    const checked = await runStowage(["check-config", `${dir}/config.json`]);
    assertEquals(checked.code, 0, checked.stderr);
    const server = await spawnStowage(
      ["--config", `${dir}/config.json`, "--listen", "127.0.0.1:0"],
      {
        env: { STOWAGE_READ_HEADER_TIMEOUT: "0" },
      },
    );
    try {
      // the head timeout is off (environment beats the file); the idle timeout of 1 s is on
      const [partial, idle] = await Promise.all([
        probe(server.port, { first: "GET /health HTTP/1.1\r\nHost: x\r\n", watchMs: 2500 }),
        probe(server.port, { first: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", watchMs: 2500 }),
      ]);
      assertEquals(partial.statuses, []);
      closedWithin(partial, 900, 2000, "partial head under the idle timeout");
      assertEquals(idle.statuses, [200]);
      closedWithin(idle, 900, 2000, "idle keep-alive");
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("timeouts: stalledBy tells a stalling client from a busy server", () => {
  const request = (complete: boolean, paused: boolean) =>
    ({ complete, readableEnded: complete, isPaused: () => paused }) as unknown as Parameters<
      typeof stalledBy
    >[0]["request"];
  const response = (queued: number) =>
    ({ writableLength: queued, writableNeedDrain: queued > 0 }) as unknown as Parameters<
      typeof stalledBy
    >[0]["response"];
  assertEquals(stalledBy({ request: request(false, false), response: response(0) }, 0), "client");
  assertEquals(stalledBy({ request: request(false, true), response: response(0) }, 0), "server");
  assertEquals(stalledBy({ request: request(true, false), response: response(0) }, 0), "server");
  assertEquals(stalledBy({ request: request(true, false), response: response(0) }, 512), "client");
  assertEquals(stalledBy({ request: request(true, false), response: response(4096) }, 0), "client");
});
