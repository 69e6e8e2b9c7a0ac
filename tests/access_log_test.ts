// Access log: the combined line exactly as rest-server writes it (local time, escaping, the byte
// count), the JSON line, redaction of credentials, and the file itself (mode 0640, append,
// background flushing, nothing lost on close, "-" for stdout).

import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import type { AccessRecord } from "../src/http/dispatch.ts";
import type { RequestInfo } from "../src/http/types.ts";
import {
  clfTime,
  formatCombined,
  formatJson,
  openAccessLog,
  redactQuery,
} from "../src/http/access_log.ts";
import { setRequestProtocol } from "../src/http/request_protocol.ts";

function record(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    status?: number;
    bytes?: number | null;
    info?: RequestInfo;
  } = {},
): AccessRecord {
  return {
    request: new Request(url, { method: options.method ?? "GET", headers: options.headers }),
    info: options.info ?? { remoteAddr: "127.0.0.1", transport: "tcp" },
    status: options.status ?? 200,
    bytes: options.bytes === undefined ? 0 : options.bytes,
    started: performance.now(),
  };
}

const TIME = String
  .raw`\[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]`;

Deno.test("combined: the line rest-server writes", () => {
  const line = formatCombined(record("http://127.0.0.1:8000/config", {
    headers: { referer: "http://ref", "user-agent": "restic/0.17.0" },
  }));
  assertMatch(
    line,
    new RegExp(
      `^127\\.0\\.0\\.1 - - ${TIME} "GET /config HTTP/1\\.1" 200 0 "http://ref" "restic/0\\.17\\.0"$`,
    ),
  );
});

Deno.test("combined: HEAD byte count, no Referer/User-Agent, streamed body, HTTP/2", () => {
  const head = formatCombined(record("http://h/alice/data/ab", {
    method: "HEAD",
    status: 404,
    bytes: 10,
    info: { remoteAddr: "::1", transport: "tcp" },
  }));
  assert(head.startsWith("::1 - - ["), head);
  assert(head.endsWith(`] "HEAD /alice/data/ab HTTP/1.1" 404 10 "" ""`), head);
  const streamed = record("http://h/alice/data/?x=1", { bytes: null });
  setRequestProtocol(streamed.request, "HTTP/2.0");
  assert(formatCombined(streamed).endsWith(`"GET /alice/data/?x=1 HTTP/2.0" 200 - "" ""`));
  const emptyQuery = formatCombined(record("http://h/a?"));
  assert(emptyQuery.includes(`"GET /a? HTTP/1.1"`), emptyQuery);
});

Deno.test("combined: the request URI as sent (path and query, raw percent-encoding)", () => {
  const line = formatCombined(record("http://h/alice%2Fsub/keys/?create=true&x=%41"));
  assert(line.includes(`"GET /alice%2Fsub/keys/?create=true&x=%41 HTTP/1.1"`), line);
});

Deno.test("combined: client text is escaped (control characters, backslash, quote)", () => {
  const line = formatCombined(record("http://h/x", {
    headers: { "user-agent": 'evil\\"agent\x1b[31m\x7f', referer: "a\tb" },
    info: { remoteAddr: "stdio-client", transport: "stdio" },
  }));
  assert(line.startsWith("stdio-client - - ["), line);
  assert(line.endsWith(`"a\\x09b" "evil\\\\\\"agent\\x1b[31m\\x7f"`), line);
  assert(![...line].some((c) => c < " " || c === "\x7f"), "no raw control character");
});

Deno.test("combined and json: no credentials in the log", () => {
  const rec = record(
    "http://h/repo/config?token=abc123&create=true&Password=hunter2&api_key=k1&keyring&a=b",
    { headers: { authorization: "Basic YWxpY2U6c2VjcmV0", cookie: "session=abc123" } },
  );
  for (const line of [formatCombined(rec), formatJson(rec)]) {
    for (const secret of ["abc123", "hunter2", "k1", "YWxpY2U6c2VjcmV0", "alice", "Basic"]) {
      assert(!line.includes(secret), `${secret} leaked: ${line}`);
    }
  }
  assert(
    formatCombined(rec).includes(
      "/repo/config?token=REDACTED&create=true&Password=REDACTED&api_key=REDACTED&keyring=REDACTED&a=b",
    ),
  );
  assertEquals(redactQuery("pass%77ord=x&y=1"), "pass%77ord=REDACTED&y=1");
  assertEquals(redactQuery("secret"), "secret=REDACTED");
  assertEquals(redactQuery(""), "");
  // Userinfo in the URL (absolute-form request targets) never reaches the log.
  const withUser = record("http://alice:pw0rd@h/x?y=1");
  for (const line of [formatCombined(withUser), formatJson(withUser)]) {
    assert(!line.includes("alice") && !line.includes("pw0rd"), line);
  }
  assert(formatCombined(withUser).includes(`"GET /x?y=1 HTTP/1.1"`));
});

Deno.test("json: one object per request with the documented fields", () => {
  const rec = record("http://h/alice/data/ab?create=true&token=t0p", {
    method: "POST",
    status: 200,
    bytes: 0,
    headers: { "user-agent": "restic/0.17.0\x1b", referer: "http://ref" },
    info: { remoteAddr: "192.0.2.7", transport: "tls" },
  });
  rec.started -= 12.5;
  const line = formatJson(rec);
  assert(!line.includes("\n"));
  const parsed = JSON.parse(line);
  assertEquals(Object.keys(parsed), [
    "time",
    "remote",
    "method",
    "path",
    "query",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "referer",
    "transport",
    "protocol",
  ]);
  assertMatch(parsed.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert(Math.abs(Date.parse(parsed.time) - Date.now()) < 5000);
  assertEquals(parsed.remote, "192.0.2.7");
  assertEquals(parsed.method, "POST");
  assertEquals(parsed.path, "/alice/data/ab");
  assertEquals(parsed.query, "create=true&token=REDACTED");
  assertEquals(parsed.status, 200);
  assertEquals(parsed.bytes, 0);
  assert(parsed.duration_ms >= 12.5 && parsed.duration_ms < 5000, String(parsed.duration_ms));
  assertEquals(parsed.user_agent, "restic/0.17.0\x1b");
  assertEquals(parsed.referer, "http://ref");
  assertEquals(parsed.transport, "tls");
  assertEquals(parsed.protocol, "HTTP/1.1");
  assertEquals(JSON.parse(formatJson(record("http://h/x", { bytes: null }))).bytes, null);
});

Deno.test("clfTime: local time with the numeric zone offset", async () => {
  const date = new Date(2026, 10, 23, 1, 26, 40);
  const offset = -date.getTimezoneOffset();
  const zone = `${offset < 0 ? "-" : "+"}${
    String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0")
  }${String(Math.abs(offset) % 60).padStart(2, "0")}`;
  assertEquals(clfTime(date), `23/Nov/2026:01:26:40 ${zone}`);
  const module = new URL("../src/http/access_log.ts", import.meta.url).href;
  const script =
    `import { clfTime } from "${module}"; console.log(clfTime(new Date(Date.UTC(2026, 0, 5, 23, 4, 5))));`;
  for (
    const [tz, expected] of [
      ["UTC", "05/Jan/2026:23:04:05 +0000"],
      ["Asia/Kolkata", "06/Jan/2026:04:34:05 +0530"],
      ["America/St_Johns", "05/Jan/2026:19:34:05 -0330"],
    ]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      env: { TZ: tz },
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), expected, tz);
  }
});

Deno.test("file: created with mode 0640, appended to, nothing lost on close", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/access.log`;
    const log = await openAccessLog(path, "combined");
    for (let i = 0; i < 5000; i++) log.write(record(`http://h/n/${i}`));
    await log.close();
    log.write(record("http://h/after-close"));
    const info = await Deno.stat(path);
    const umask = Deno.umask();
    assertEquals((info.mode ?? 0) & 0o777, 0o640 & ~umask);
    if (umask === 0o022) assertEquals((info.mode ?? 0) & 0o777, 0o640);
    let lines = (await Deno.readTextFile(path)).split("\n");
    assertEquals(lines.length, 5001);
    assertEquals(lines[5000], "");
    for (let i = 0; i < 5000; i++) assert(lines[i].includes(`"GET /n/${i} HTTP/1.1"`), lines[i]);

    const again = await openAccessLog(path, "json");
    again.write(record("http://h/second"));
    await again.close();
    lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
    assertEquals(lines.length, 5001);
    assertEquals(JSON.parse(lines[5000]).path, "/second");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file: lines reach the file within about a second without close", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/access.log`;
  const log = await openAccessLog(path, "combined");
  try {
    log.write(record("http://h/early"));
    const deadline = Date.now() + 3000;
    let text = "";
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      text = await Deno.readTextFile(path);
      if (text !== "") break;
    }
    assert(text.includes(`"GET /early HTTP/1.1"`), `file content: ${JSON.stringify(text)}`);
  } finally {
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file: an unusable target is an error at open", async () => {
  await assertRejects(
    () => openAccessLog("/nonexistent-dir-for-stowage/access.log", "combined"),
    (error) => String(error).includes("/nonexistent-dir-for-stowage/access.log"),
  );
});

Deno.test("stdout: '-' writes lines to standard output", async () => {
  const module = new URL("../src/http/access_log.ts", import.meta.url).href;
  const script = `
    import { openAccessLog } from "${module}";
    const log = await openAccessLog("-", "combined");
    log.write({
      request: new Request("http://h/one"),
      info: { remoteAddr: "10.0.0.1", transport: "tcp" },
      status: 201, bytes: 3, started: performance.now(),
    });
    await log.close();
    console.log("after close");`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assertEquals(out.code, 0);
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  assertMatch(
    lines[0],
    new RegExp(`^10\\.0\\.0\\.1 - - ${TIME} "GET /one HTTP/1\\.1" 201 3 "" ""$`),
  );
  assertEquals(lines[1], "after close");
});
