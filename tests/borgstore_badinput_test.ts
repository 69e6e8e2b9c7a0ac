// BorgStore bad input: invalid names in every position (path, move parameters, defrag target
// and sources), malformed defrag bodies and parameters, odd ranges, wrong content hashes and
// truncated bodies. Every case must answer 4xx (never 5xx) and leave the store unchanged,
// byte for byte, including no leftover temp files.

import { assert, assertEquals } from "./_assert.ts";
import {
  A,
  call,
  type CallResult,
  rawExchange,
  rawRequest,
  snapshot,
  startServer,
  type TestServer,
} from "./borgstore_helpers.ts";

async function fixture(server: TestServer): Promise<string[]> {
  for (const [name, body] of [["data/ab/abcd", "hello"], ["file1", "0123456789"], ["e", ""]]) {
    assertEquals((await call(server, "POST", `/${name}`, { body })).status, 200);
  }
  return await snapshot(server.root);
}

function expect4xx(result: { status: number; text: string }, what: string, exact?: number) {
  if (exact !== undefined) assertEquals(result.status, exact, `${what}: ${result.text}`);
  assert(result.status >= 400 && result.status < 500, `${what} → ${result.status}: ${result.text}`);
}

/** Invalid names usable in a raw request path (the path is not percent-decoded). */
const PATH_NAMES = [
  "Upper",
  "a..b",
  "../escape",
  "x/../../escape",
  "a\\b",
  "z".repeat(101),
  "x.tmp",
  "quota.hid",
  "dir/x.hid",
  "x//y",
  "x/./y",
  "%C3%A4",
];

/** Invalid names as form-decoded query values (move, defrag). */
const QUERY_NAMES = [
  "Upper",
  "a..b",
  "..%2Fescape",
  "%2Fabs",
  "trailing%2F",
  "a+b",
  "a%5Cb",
  "a%00b",
  "a%0Ab",
  "%C3%A4",
  "z".repeat(101),
  "x.tmp",
  "quota.hid",
];

Deno.test("invalid names in request paths → 400 for every operation, nothing changed", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    for (const name of PATH_NAMES) {
      const requests: [string, string, string][] = [
        ["POST", `/${name}`, "xx"],
        ["POST", `/${name}?cmd=bogus`, "xx"],
        ["GET", `/${name}`, ""],
        ["GET", `/${name}/`, ""],
        ["HEAD", `/${name}`, ""],
        ["DELETE", `/${name}`, ""],
        ["POST", `/${name}?cmd=hash`, ""],
        ["POST", `/${name}?cmd=mkdir`, ""],
        ["DELETE", `/${name}?cmd=rmdir`, ""],
      ];
      const raw = requests.map(([method, target, body]) => rawRequest(method, target, body)).join(
        "",
      );
      const responses = await rawExchange(server.port, raw, requests.map(([method]) => method));
      assertEquals(responses.length, requests.length, `responses for ${name}`);
      for (const [i, response] of responses.entries()) {
        expect4xx(response, `${requests[i][0]} ${requests[i][1]}`, 400);
        if (requests[i][0] === "HEAD") assertEquals(response.body.byteLength, 0);
      }
    }
    assertEquals(await snapshot(server.root), before);
    assertEquals((await snapshot(server.dir)).filter((l) => l.includes("escape")), []);
  } finally {
    await server.close();
  }
});

function formDecode(value: string): string {
  return new URLSearchParams(`v=${value}`).get("v")!;
}

Deno.test("invalid names in move and defrag parameters → 400, nothing changed", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    for (const name of QUERY_NAMES) {
      const cases: [string, string, string][] = [
        [`/?cmd=move&current=${name}&new=ok`, "", "move current"],
        [`/?cmd=move&current=file1&new=${name}`, "", "move new"],
        [`/?cmd=defrag&target=${name}`, "[]", "defrag target"],
        [`/?cmd=defrag&target=t`, JSON.stringify([[formDecode(name), 0, 1]]), "source"],
      ];
      for (const [path, body, what] of cases) {
        expect4xx(await call(server, "POST", path, { body }), `${what} ${name}`, 400);
      }
    }
    assertEquals(await snapshot(server.root), before);
    assertEquals((await snapshot(server.dir)).filter((l) => l.includes("escape")), []);
  } finally {
    await server.close();
  }
});

Deno.test("computed defrag names that break the rules → 400", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    const body = '[["file1", 0, 3]]';
    for (
      const query of [
        "algorithm=sha256&namespace=Upper",
        "algorithm=sha256&namespace=..",
        "algorithm=sha512&namespace=" + "n".repeat(40), // 40 + 1 + 128 > 100
        "algorithm=sha256&levels=16&namespace=" + "n".repeat(10),
      ]
    ) {
      expect4xx(await call(server, "POST", `/?cmd=defrag&${query}`, { body }), query, 400);
    }
    assertEquals(await snapshot(server.root), before);
  } finally {
    await server.close();
  }
});

Deno.test("malformed defrag bodies and parameters → 400, nothing changed", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    const bodies = [
      "xyz",
      "",
      "{}",
      "null",
      "42",
      '"text"',
      "[1]",
      '[["file1"]]',
      '[["file1", 0]]',
      '[["file1", "0", 1]]',
      '[["file1", 0, "1"]]',
      '[["file1", 0, null]]',
      '[["file1", 0, -1]]',
      '[["file1", 0.5, 1]]',
      '[["file1", 0, 1.5]]',
      '[["file1", 0, 1e300]]',
      "[[1, 0, 1]]",
      '[["file1", 0, 1, 2]]',
      '[{"name": "file1"}]',
      '[["file1", 0, 1]',
    ];
    for (const body of bodies) {
      expect4xx(await call(server, "POST", "/?cmd=defrag&target=t", { body }), `body ${body}`, 400);
    }
    const invalidUtf8 = new Uint8Array([
      0x5b,
      0x5b,
      0x22,
      0xff,
      0xfe,
      0x22,
      0x2c,
      0x30,
      0x2c,
      0x31,
      0x5d,
      0x5d,
    ]);
    expect4xx(
      await call(server, "POST", "/?cmd=defrag&target=t", { body: invalidUtf8 }),
      "utf8",
      400,
    );
    for (const levels of ["x", "1.5", "17", "99999999999999999999999", "--1", "1e3", " 1"]) {
      const path = `/?cmd=defrag&algorithm=sha256&levels=${encodeURIComponent(levels)}`;
      expect4xx(await call(server, "POST", path, { body: '[["file1", 0, 3]]' }), levels, 400);
    }
    expect4xx(await call(server, "POST", "/?cmd=defrag", { body: "[]" }), "no target", 400);
    // A body over the 16 MiB limit is rejected after being read completely (no desync).
    const huge = new Uint8Array(17 * 1024 * 1024).fill(0x20);
    const tooBig = await call(server, "POST", "/?cmd=defrag&target=t", { body: huge });
    expect4xx(tooBig, "16 MiB limit", 400);
    assertEquals(await snapshot(server.root), before);
  } finally {
    await server.close();
  }
});

Deno.test("odd ranges never fail; defrag ranges outside the item → 416", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    const ranges: [string, string][] = [
      ["bytes=abc", "0123456789"],
      ["bytes=-", "0123456789"],
      ["bytes=", "0123456789"],
      ["bytes=5-3", "56789"],
      ["bytes=4-3", ""],
      ["bytes=99999999999999999999-", ""],
      ["bytes=-99999999999999999999", "0123456789"],
      ["bytes=1-99999999999999999999", "123456789"],
      ["bytes=+1-2", "0123456789"],
      ["BYTES=1-2", "0123456789"],
      ["bytes=1-2, 4-5", "0123456789"],
      ["", "0123456789"],
    ];
    for (const [range, body] of ranges) {
      const r = await call(server, "GET", "/file1", { headers: { range } });
      assertEquals([r.status, r.text], [206, body], `Range ${range}`);
    }
    for (
      const [source, got] of [
        [["file1", 10, 1], 0],
        [["file1", 11, 1], 0],
        [["file1", -11, 1], 0],
        [["file1", 9, 2], 1],
        [["file1", -2, 3], 2],
        [["e", 0, 1], 0],
      ] as const
    ) {
      const r = await call(server, "POST", "/?cmd=defrag&target=t", {
        body: JSON.stringify([source]),
      });
      expect4xx(r, JSON.stringify(source), 416);
      assert(
        r.text.includes(
          `Read range error from ${source[0]} (requested ${source[2]} bytes at offset ${
            source[1]
          }, got ${got})`,
        ),
        r.text,
      );
    }
    assertEquals(await snapshot(server.root), before);
  } finally {
    await server.close();
  }
});

Deno.test("wrong content hashes → 422, nothing stored or changed", async () => {
  const server = await startServer({ create: true, quota: 1_000_000 });
  try {
    const before = await fixture(server);
    const usage = (await call(server, "POST", "/?cmd=quota")).text;
    const wrong = [
      "0".repeat(64),
      "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
      "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",
      "not-a-hash",
      " 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824x",
    ];
    for (const hash of wrong) {
      for (const name of ["new-item", "data/ab/abcd", "file1"]) {
        const r: CallResult = await call(server, "POST", `/${name}`, {
          body: "hello",
          headers: { "X-Content-hash-sha256": hash },
        });
        expect4xx(r, `${name} with ${hash}`, 422);
        assertEquals(r.text, "Content hash verification failed, please retry");
      }
    }
    assertEquals(await snapshot(server.root), before);
    assertEquals((await call(server, "POST", "/?cmd=quota")).text, usage);
  } finally {
    await server.close();
  }
});

Deno.test("invalid Content-Length and misc. routing errors → 4xx", async () => {
  const server = await startServer({ create: true });
  try {
    const before = await fixture(server);
    const requests = [
      rawRequest("POST", "/", "xx"),
      rawRequest("DELETE", "/", ""),
      rawRequest("POST", "/?cmd=hash", ""),
      rawRequest("POST", "/?cmd=move&current=file1", ""),
      rawRequest("POST", "/?cmd=defrag", "[]"),
      rawRequest("DELETE", "/?cmd=rmdir", ""),
      rawRequest("GET", "/", "", ["Accept: text/html"]).replace(`Accept: ${A}\r\n`, ""),
    ];
    const responses = await rawExchange(
      server.port,
      requests.join("") + rawRequest("GET", "/file1"),
      [...requests.map(() => "X"), "GET"],
    );
    assertEquals(responses.map((r) => r.status), [400, 400, 400, 400, 400, 400, 406, 200]);
    assertEquals(responses.at(-1)!.text, "0123456789");
    const [bad] = await rawExchange(
      server.port,
      `POST /x HTTP/1.1\r\nHost: t\r\nAccept: ${A}\r\nContent-Length: abc\r\nConnection: close\r\n\r\n`,
      ["POST"],
    );
    expect4xx(bad, "Content-Length: abc");
    assertEquals(await snapshot(server.root), before);
  } finally {
    await server.close();
  }
});

/** Sends a request whose body stops early, then half-closes; returns a response if any came. */
async function truncated(server: TestServer, head: string, partial: string) {
  const responses = await rawExchange(server.port, head + partial, ["POST"], {
    closeWrite: true,
    timeoutMs: 3000,
  });
  return responses[0];
}

Deno.test("truncated bodies store nothing and leave no temp files", async () => {
  const server = await startServer({ create: true, quota: 1_000_000 });
  try {
    const before = await fixture(server);
    const usage = (await call(server, "POST", "/?cmd=quota")).text;
    const header = (target: string, length: number) =>
      `POST ${target} HTTP/1.1\r\nHost: t\r\nAccept: ${A}\r\nContent-Length: ${length}\r\n\r\n`;
    const chunked = (target: string) =>
      `POST ${target} HTTP/1.1\r\nHost: t\r\nAccept: ${A}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const cases: [string, string][] = [
      [header("/new-item", 1000), "only a part"],
      [header("/file1", 1000), "0123456789abc"],
      [header("/data/ab/abcd", 6), "hello"],
      [header("/new/dir/item", 100000), "x".repeat(70000)],
      [chunked("/chunked-item"), "5\r\nhello\r\n"],
      [header("/?cmd=defrag&target=t", 100), '[["file1", 0, 1]]'],
    ];
    for (const [head, partial] of cases) {
      const response = await truncated(server, head, partial);
      if (response !== undefined) expect4xx(response, head.split("\r\n")[0]);
    }
    // The server is still healthy and nothing (not even a temp file) was left behind.
    assertEquals((await call(server, "GET", "/file1")).text, "0123456789");
    assertEquals(await snapshot(server.root), before);
    assertEquals((await call(server, "POST", "/?cmd=quota")).text, usage);
  } finally {
    await server.close();
  }
});

Deno.test("chunked bodies are decoded correctly", async () => {
  const server = await startServer({ create: true });
  try {
    const [stored, loaded] = await rawExchange(
      server.port,
      `POST /chunked HTTP/1.1\r\nHost: t\r\nAccept: ${A}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + rawRequest("GET", "/chunked"),
      ["POST", "GET"],
    );
    assertEquals([stored.status, loaded.status, loaded.text], [200, 200, "hello world"]);
  } finally {
    await server.close();
  }
});
