// Tests for src/http/auth.ts: Basic header parsing and the four authenticators.

import { createHash } from "node:crypto";
import {
  htpasswdAuth,
  noAuth,
  parseBasicAuth,
  proxyAuth,
  singleUserAuth,
} from "../src/http/auth.ts";
import { HtpasswdFile } from "../src/http/htpasswd.ts";
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

/** base64 of the UTF-8 bytes of `text`. */
function b64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

/** base64 of raw bytes. */
function b64Bytes(bytes: number[]): string {
  return btoa(String.fromCharCode(...bytes));
}

/** A request with the given headers. */
function req(headers: Record<string, string> = {}): Request {
  return new Request("http://localhost/repo/config", { headers });
}

Deno.test("parseBasicAuth: accepted forms", () => {
  const cases: [string, { user: string; password: string }][] = [
    [`Basic ${b64("alice:secret")}`, { user: "alice", password: "secret" }],
    [`basic ${b64("alice:secret")}`, { user: "alice", password: "secret" }],
    [`BASIC ${b64("alice:secret")}`, { user: "alice", password: "secret" }],
    [`Basic ${b64("alice:se:cr:et")}`, { user: "alice", password: "se:cr:et" }],
    [`Basic ${b64("alice:")}`, { user: "alice", password: "" }],
    [`Basic ${b64(":")}`, { user: "", password: "" }],
    [`Basic ${b64("ünï:pä ss")}`, { user: "ünï", password: "pä ss" }],
    [`Basic ${b64("a:bc")}`, { user: "a", password: "bc" }], // "==" padding
    [`Basic ${b64("a:b")}`, { user: "a", password: "b" }], // no padding
    [`Basic ${b64("a:bcde")}`, { user: "a", password: "bcde" }], // "=" padding
  ];
  for (const [header, expected] of cases) assertEquals(parseBasicAuth(header), expected, header);
});

Deno.test("parseBasicAuth: malformed input gives null", () => {
  const good = b64("alice:secret");
  const cases: (string | null)[] = [
    null,
    "",
    "Basic",
    "Basic ",
    `Basic  ${good}`,
    `Basic\t${good}`,
    `Basic${good}`,
    ` Basic ${good}`,
    `Basic ${good} `,
    `Basic ${good}\n`,
    `Bearer ${good}`,
    `Digest ${good}`,
    `Basic ${b64("nocolon")}`,
    `Basic ${good.slice(0, -1)}`,
    `Basic ${b64("a:bc").replace(/=+$/, "")}`, // missing padding
    `Basic ${good.slice(0, 4)} ${good.slice(4)}`,
    `Basic ${good.replace(/[A-Za-z]/, "-")}`, // URL-safe alphabet
    "Basic ====",
    "Basic !!!!",
    "Basic é",
    `Basic ${b64Bytes([0xff, 0xfe, 0x3a, 0x70])}`, // not UTF-8
    `Basic ${b64Bytes([0x61, 0x3a, 0xc3])}`, // truncated UTF-8 sequence
    `Basic ${b64("alice:" + "x".repeat(100_000))}`,
    "Basic " + "A".repeat(100 * 1024),
  ];
  for (const header of cases) {
    assertEquals(parseBasicAuth(header), null, String(header).slice(0, 40));
  }
});

Deno.test("parseBasicAuth: random input never throws", () => {
  const alphabet = "Basic basic=+/:AZaz09 \t\r\n\u00e9\u0000\ud800";
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let i = 0; i < 5000; i++) {
    let text = i % 2 ? "Basic " : "";
    const length = next() % 60;
    for (let j = 0; j < length; j++) text += alphabet[next() % alphabet.length];
    const result = parseBasicAuth(text);
    assert(result === null || typeof result.user === "string");
  }
  assertEquals(parseBasicAuth(undefined as unknown as string), null);
  assertEquals(parseBasicAuth(42 as unknown as string), null);
});

Deno.test("noAuth: everyone is the anonymous user", async () => {
  assertEquals(await noAuth().authenticate(req()), "");
  assertEquals(await noAuth().authenticate(req({ authorization: "Basic !!" })), "");
});

Deno.test("proxyAuth: header value, case-insensitive name, missing or empty is null", async () => {
  const auth = proxyAuth("X-Remote-User");
  assertEquals(await auth.authenticate(req({ "x-remote-user": "alice" })), "alice");
  assertEquals(await auth.authenticate(req({ "X-REMOTE-USER": "../weird name" })), "../weird name");
  assertEquals(await auth.authenticate(req({ "x-remote-user": "" })), null);
  assertEquals(await auth.authenticate(req({ authorization: `Basic ${b64("a:b")}` })), null);
});

Deno.test("htpasswdAuth: verifies Basic credentials against the file and reloads", async () => {
  const sha = (pw: string) => `{SHA}${createHash("sha1").update(pw).digest("base64")}`;
  const dir = await Deno.makeTempDir({ prefix: "stowage-auth-" });
  const path = `${dir}/.htpasswd`;
  await Deno.writeTextFile(path, `alice:${sha("pw:1")}\n`);
  const file = await HtpasswdFile.load(path, () => {}, { reloadIntervalMs: 20 });
  const auth = htpasswdAuth(file);
  const basic = (cred: string) => req({ authorization: `Basic ${b64(cred)}` });
  assertEquals(await auth.authenticate(basic("alice:pw:1")), "alice");
  assertEquals(await auth.authenticate(basic("alice:pw")), null);
  assertEquals(await auth.authenticate(basic("bob:pw:1")), null);
  assertEquals(await auth.authenticate(req()), null);
  assertEquals(
    await auth.authenticate(req({ authorization: `Basic  ${b64("alice:pw:1")}` })),
    null,
  );
  await Deno.writeTextFile(path, `bob:${sha("b")}\n`);
  await new Promise((resolve) => setTimeout(resolve, 40));
  assertEquals(await auth.authenticate(basic("bob:b")), "bob");
  assertEquals(await auth.authenticate(basic("alice:pw:1")), null);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "htpasswdAuth: bcrypt entry made by htpasswd -B",
  ignore: peerMissing("htpasswd"),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "stowage-auth-" });
    const path = `${dir}/.htpasswd`;
    const out = await new Deno.Command("htpasswd", {
      args: ["-cbB", "-C", "5", path, "alice", "s3cret:x"],
      stdout: "null",
      stderr: "null",
    }).output();
    assert(out.success, "htpasswd failed");
    const auth = htpasswdAuth(await HtpasswdFile.load(path, () => {}));
    const basic = (cred: string) => req({ authorization: `Basic ${b64(cred)}` });
    assertEquals(await auth.authenticate(basic("alice:s3cret:x")), "alice");
    assertEquals(await auth.authenticate(basic("alice:s3cret:x")), "alice");
    assertEquals(await auth.authenticate(basic("alice:s3cret")), null);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("singleUserAuth: both must match, non-ASCII allowed, empty config refused", async () => {
  const auth = singleUserAuth("börg", "pä:ss");
  const basic = (cred: string) => req({ authorization: `basic ${b64(cred)}` });
  assertEquals(await auth.authenticate(basic("börg:pä:ss")), "börg");
  assertEquals(await auth.authenticate(basic("borg:pä:ss")), null);
  assertEquals(await auth.authenticate(basic("börg:pä:s")), null);
  assertEquals(await auth.authenticate(basic("börg:pä:ss ")), null);
  assertEquals(await auth.authenticate(basic(":")), null);
  assertEquals(await auth.authenticate(req()), null);
  assertEquals(await auth.authenticate(req({ authorization: "Bearer x" })), null);
  let threw = 0;
  for (const [u, p] of [["", "x"], ["x", ""]]) {
    try {
      singleUserAuth(u, p);
    } catch {
      threw++;
    }
  }
  assertEquals(threw, 2);
});
