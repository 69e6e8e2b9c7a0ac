// restic URL paths (src/protocol/restic_path.ts): the quick paths for already clean and
// undecoded paths answer exactly as decoding and cleaning every path would.

import { assertEquals } from "./_assert.ts";
import { cleanPath, parseResticPath } from "../src/protocol/restic_path.ts";

const SEGMENTS = [
  "",
  ".",
  "..",
  "...",
  "a",
  ".a",
  "a.",
  "data",
  "config",
  "%2e",
  "%2E%2E",
  "%2F",
  "%41",
];

/** Every path of up to four segments from SEGMENTS, with and without a trailing slash. */
function* paths(): Generator<string> {
  const build = function* (prefix: string, depth: number): Generator<string> {
    yield prefix === "" ? "/" : prefix;
    yield prefix + "/";
    if (depth === 4) return;
    for (const segment of SEGMENTS) yield* build(`${prefix}/${segment}`, depth + 1);
  };
  yield* build("", 0);
}

Deno.test("restic paths: redirects and splits as decoding and cleaning every path would", () => {
  let checked = 0;
  for (const raw of paths()) {
    const decoded = decodeURIComponent(raw);
    const result = parseResticPath(raw, "?q");
    const clean = cleanPath(decoded);
    if (clean !== decoded) {
      assertEquals(result, { kind: "redirect", location: encodeURI(clean) + "?q" }, raw);
    } else {
      assertEquals(result.kind === "redirect", false, raw);
    }
    checked++;
  }
  assertEquals(checked > 50_000, true, `${checked} paths`);
});

Deno.test("restic paths: undecodable and control characters are invalid, percent-decoding kept", () => {
  assertEquals(parseResticPath("/a/%zz/config", ""), { kind: "invalid" });
  assertEquals(parseResticPath("/a/%00/config", ""), { kind: "invalid" });
  assertEquals(parseResticPath("/%61/config", ""), {
    kind: "ok",
    folder: ["a"],
    remainder: "/config",
  });
  assertEquals(parseResticPath("/a/b/data/", ""), {
    kind: "ok",
    folder: ["a", "b"],
    remainder: "/data/",
  });
  assertEquals(parseResticPath("/a/./config", ""), { kind: "redirect", location: "/a/config" });
});
