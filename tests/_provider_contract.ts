// The storage provider contract as tests: every Provider (fs, memory, later s3) registers the same
// cases through providerContract(). Only the Provider interface is used, except for extra checks
// of the on-disk layout when the fixture names a `rootPath` (file system providers).

import { createHash } from "node:crypto";
import { StowageError } from "../src/errors.ts";
import type { ErrorKind } from "../src/errors.ts";
import type { ByteRange, Entry, Provider, Upload } from "../src/storage/provider.ts";
import { TEMP_MARKER } from "../src/storage/keys.ts";
import { assert, assertEquals } from "./_assert.ts";

export interface ProviderFixture {
  provider: Provider;
  cleanup(): Promise<void>;
  /** Set for providers backed by a local directory: enables on-disk checks. */
  rootPath?: string;
}

// ---------------------------------------------------------------------------------------------
// Helpers (exported for provider-specific test files)

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function text(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Deterministic pseudo-random bytes (xorshift32), different for every seed. */
export function patterned(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A stream that yields `data` in chunks of `chunkSize` bytes (the last one shorter). */
export function chunkedStream(data: Uint8Array, chunkSize: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= data.byteLength) {
        controller.close();
        return;
      }
      const end = Math.min(at + chunkSize, data.byteLength);
      controller.enqueue(data.slice(at, end));
      at = end;
    },
  }, { highWaterMark: 0 });
}

export async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Uploads `data` (begin, stream, commit); aborts on failure. */
export async function put(
  provider: Provider,
  key: string,
  data: Uint8Array | string,
  options: { replace?: boolean; chunkSize?: number; createParents?: boolean } = {},
): Promise<void> {
  const bytes = typeof data === "string" ? text(data) : data;
  const upload = await provider.begin(key, {
    createParents: options.createParents,
    sizeHint: bytes.byteLength,
  });
  try {
    await chunkedStream(bytes, options.chunkSize ?? 65536).pipeTo(upload.writable);
    assertEquals(upload.written(), bytes.byteLength, "written() after streaming");
    await upload.commit({ replace: options.replace ?? true });
  } catch (error) {
    await upload.abort();
    throw error;
  }
}

/** Begins an upload and streams `data` into it without committing. */
export async function stage(
  provider: Provider,
  key: string,
  data: Uint8Array | string,
): Promise<Upload> {
  const bytes = typeof data === "string" ? text(data) : data;
  const upload = await provider.begin(key);
  try {
    await chunkedStream(bytes, 65536).pipeTo(upload.writable);
  } catch (error) {
    await upload.abort();
    throw error;
  }
  return upload;
}

export async function get(
  provider: Provider,
  key: string,
  range?: ByteRange,
): Promise<Uint8Array> {
  return await collect(await provider.read(key, range));
}

export async function getText(provider: Provider, key: string): Promise<string> {
  return decoder.decode(await get(provider, key));
}

export async function entries(provider: Provider, dir: string): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const entry of provider.list(dir)) out.push(entry);
  return out;
}

export async function names(provider: Provider, dir: string): Promise<string[]> {
  return (await entries(provider, dir)).map((e) => e.name);
}

/** Expects `fn` to fail with a StowageError of one of `kinds`; returns the error. */
export async function expectKind(
  fn: () => unknown,
  ...kinds: ErrorKind[]
): Promise<StowageError> {
  let result: unknown;
  try {
    result = await fn();
  } catch (error) {
    if (!(error instanceof StowageError)) {
      throw new Error(`expected StowageError ${kinds.join("|")}, got ${error}`, { cause: error });
    }
    if (!kinds.includes(error.kind)) {
      throw new Error(`expected kind ${kinds.join("|")}, got ${error.kind}: ${error.message}`, {
        cause: error,
      });
    }
    return error;
  }
  throw new Error(`expected ${kinds.join("|")}, but it succeeded with ${String(result)}`);
}

/** Names in a local directory (for on-disk checks). */
export async function diskNames(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(path)) out.push(e.name);
  return out.sort();
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** UTF-8 byte order, which the contract promises for listings (S3 lists in this order too). */
export function compareBytes(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.byteLength, y.byteLength);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.byteLength - y.byteLength;
}

export const SIZE_MATRIX = [0, 1, 65535, 65536, 65537, 3_000_000];
export const CHUNK_SIZES = [1, 7 * 1024, 64 * 1024, 1024 * 1024];
/** 1-byte chunks only for sizes up to this. */
const ONE_BYTE_CHUNK_LIMIT = 65537;

const INVALID_KEYS = [
  "../x",
  "..",
  "a/../b",
  "a//b",
  "a/./b",
  "./a",
  "/abs",
  "a/",
  "a\u0000b",
  "a\\b",
  "..\\x",
  `x${TEMP_MARKER}`,
];

// ---------------------------------------------------------------------------------------------

export function providerContract(name: string, factory: () => Promise<ProviderFixture>): void {
  const test = (title: string, fn: (f: ProviderFixture) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const fixture = await factory();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    });

  test("stat of a missing key is null", async ({ provider }) => {
    assertEquals(await provider.stat("missing"), null);
    assertEquals(await provider.stat("no/such/dir/missing"), null);
    await put(provider, "file", "x");
    assertEquals(await provider.stat("file/below"), null, "below a file");
    const root = await provider.stat("");
    assert(root !== null && root.isDirectory, "the root is a directory");
  });

  test("begin/write/commit makes the object visible with exact bytes", async ({ provider, rootPath }) => {
    const data = patterned(100_000, 7);
    const upload = await provider.begin("dir/sub/obj", { sizeHint: data.byteLength });
    await chunkedStream(data, 4096).pipeTo(upload.writable);
    assertEquals(upload.written(), data.byteLength);
    const before = Date.now();
    await upload.commit({ replace: false });
    const stat = await provider.stat("dir/sub/obj");
    assert(stat !== null, "visible after commit");
    assertEquals(stat.size, data.byteLength);
    assertEquals(stat.isDirectory, false);
    assert(stat.mtimeMs > 0 && stat.mtimeMs <= Date.now() + 60_000, `mtime ${stat.mtimeMs}`);
    assert(stat.mtimeMs >= before - 60_000, "mtime close to now");
    assertEquals(sha256(await get(provider, "dir/sub/obj")), sha256(data));
    assertEquals((await provider.stat("dir"))?.isDirectory, true, "parents created");
    // abort after commit is harmless
    await upload.abort();
    assertEquals((await provider.stat("dir/sub/obj"))?.size, data.byteLength);
    // a second commit is refused
    await expectKind(() => upload.commit({ replace: true }), "Internal");
    if (rootPath) {
      assertEquals(await diskNames(`${rootPath}/dir/sub`), ["obj"], "no temp file left");
    }
  });

  test("the caller may reuse its chunk buffers once a write resolves", async ({ provider }) => {
    const upload = await provider.begin("reuse");
    const writer = upload.writable.getWriter();
    const buffer = new Uint8Array(1000);
    const expected = new Uint8Array(50 * 1000);
    for (let i = 0; i < 50; i++) {
      buffer.fill(i + 1);
      expected.fill(i + 1, i * 1000, (i + 1) * 1000);
      await writer.write(buffer);
    }
    // one large chunk, reused too
    const big = patterned(800_000, 3);
    await writer.write(big);
    const expectedAll = new Uint8Array(expected.byteLength + big.byteLength);
    expectedAll.set(expected);
    expectedAll.set(big, expected.byteLength);
    big.fill(0);
    await writer.close();
    await upload.commit({ replace: true });
    assertEquals(sha256(await get(provider, "reuse")), sha256(expectedAll));
  });

  test("an upload is invisible to stat, list and read before commit", async ({ provider, rootPath }) => {
    await put(provider, "d/other", "other");
    const upload = await stage(provider, "d/pending", patterned(200_000, 2));
    try {
      assertEquals(await provider.stat("d/pending"), null);
      assertEquals(await names(provider, "d"), ["other"]);
      await expectKind(() => provider.read("d/pending"), "NotFound");
      if (rootPath) {
        const onDisk = await diskNames(`${rootPath}/d`);
        assertEquals(onDisk.length, 2, `temp file exists on disk: ${onDisk}`);
        const temp = onDisk.find((n) => n !== "other")!;
        assert(temp.includes(TEMP_MARKER), `temp name ${temp}`);
        // the temp name cannot be addressed through the provider
        await expectKind(() => provider.stat(`d/${temp}`), "BadRequest");
        await expectKind(() => provider.read(`d/${temp}`), "BadRequest");
      }
      await upload.commit({ replace: false });
      assertEquals(await names(provider, "d"), ["other", "pending"]);
      assertEquals((await provider.stat("d/pending"))?.size, 200_000);
    } finally {
      await upload.abort();
    }
    if (rootPath) assertEquals(await diskNames(`${rootPath}/d`), ["other", "pending"]);
  });

  test("abort leaves nothing behind", async ({ provider, rootPath }) => {
    await provider.mkdir("a");
    const upload = await stage(provider, "a/x", patterned(3_000_000, 5));
    await upload.abort();
    await upload.abort(); // idempotent
    assertEquals(await provider.stat("a/x"), null);
    assertEquals(await names(provider, "a"), []);
    await expectKind(() => provider.read("a/x"), "NotFound");
    await expectKind(() => upload.commit({ replace: true }), "Internal");
    assertEquals(await provider.stat("a/x"), null, "commit after abort publishes nothing");
    if (rootPath) assertEquals(await diskNames(`${rootPath}/a`), []);
    // an untouched upload, aborted
    const empty = await provider.begin("a/y");
    await empty.abort();
    assertEquals(await names(provider, "a"), []);
    if (rootPath) assertEquals(await diskNames(`${rootPath}/a`), []);
  });

  test("commit without replace on an existing key fails with Exists", async ({ provider, rootPath }) => {
    await put(provider, "k", "old content");
    const upload = await stage(provider, "k", "new content, longer");
    await expectKind(() => upload.commit({ replace: false }), "Exists");
    await upload.abort();
    assertEquals(await getText(provider, "k"), "old content");
    assertEquals((await provider.stat("k"))?.size, 11);
    await expectKind(() => put(provider, "k", "again", { replace: false }), "Exists");
    assertEquals(await getText(provider, "k"), "old content");
    assertEquals(await names(provider, ""), ["k"]);
    if (rootPath) assertEquals(await diskNames(rootPath), ["k"], "loser's temp file removed");
  });

  test("commit with replace replaces", async ({ provider, rootPath }) => {
    await put(provider, "k", patterned(300_000, 1));
    await put(provider, "k", "short", { replace: true });
    assertEquals(await getText(provider, "k"), "short");
    assertEquals((await provider.stat("k"))?.size, 5);
    await put(provider, "k", "", { replace: true });
    assertEquals((await provider.stat("k"))?.size, 0);
    assertEquals(await get(provider, "k"), new Uint8Array(0));
    if (rootPath) assertEquals(await diskNames(rootPath), ["k"]);
  });

  test("concurrent no-replace commits: exactly one wins", async ({ provider, rootPath }) => {
    const n = 8;
    const bodies = Array.from({ length: n }, (_, i) => patterned(50_000 + i, 100 + i));
    const uploads: Upload[] = [];
    for (const body of bodies) uploads.push(await stage(provider, "race/obj", body));
    const results = await Promise.allSettled(
      uploads.map(async (u) => await u.commit({ replace: false })),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    assertEquals(winners.length, 1, `winners: ${winners}`);
    for (const r of results) {
      if (r.status === "rejected") {
        assert(
          r.reason instanceof StowageError && r.reason.kind === "Exists",
          `loser error: ${r.reason}`,
        );
      }
    }
    await Promise.all(uploads.map((u) => u.abort()));
    assertEquals(sha256(await get(provider, "race/obj")), sha256(bodies[winners[0]]));
    assertEquals(await names(provider, "race"), ["obj"]);
    if (rootPath) assertEquals(await diskNames(`${rootPath}/race`), ["obj"]);
  });

  test("concurrent replace commits: one complete body wins", async ({ provider, rootPath }) => {
    const bodies = Array.from({ length: 6 }, (_, i) => patterned(70_000 + i * 1000, 200 + i));
    const uploads: Upload[] = [];
    for (const body of bodies) uploads.push(await stage(provider, "obj", body));
    await Promise.all(uploads.map(async (u) => await u.commit({ replace: true })));
    const got = sha256(await get(provider, "obj"));
    assert(bodies.some((b) => sha256(b) === got), "content is one of the bodies");
    if (rootPath) assertEquals(await diskNames(rootPath), ["obj"]);
  });

  for (const size of SIZE_MATRIX) {
    test(`streaming size ${size}: size and SHA-256 round-trip`, async ({ provider, rootPath }) => {
      const data = patterned(size, size + 11);
      const digest = sha256(data);
      for (const chunkSize of CHUNK_SIZES) {
        if (chunkSize === 1 && size > ONE_BYTE_CHUNK_LIMIT) continue;
        const key = `sizes/s${size}-c${chunkSize}`;
        await put(provider, key, data, { chunkSize, replace: false });
        const stat = await provider.stat(key);
        assertEquals(stat?.size, size, `stat size, chunk ${chunkSize}`);
        const back = await get(provider, key);
        assertEquals(back.byteLength, size, `read size, chunk ${chunkSize}`);
        assertEquals(sha256(back), digest, `read digest, chunk ${chunkSize}`);
        if (rootPath) {
          const path = `${rootPath}/${key}`;
          assertEquals((await Deno.stat(path)).size, size, `disk size, chunk ${chunkSize}`);
          assertEquals(await hashFile(path), digest, `disk digest, chunk ${chunkSize}`);
        }
      }
      const listed = await entries(provider, "sizes");
      assert(listed.every((e) => e.size === size && !e.isDirectory), "listed sizes");
      if (rootPath) {
        const onDisk = await diskNames(`${rootPath}/sizes`);
        assert(onDisk.every((n) => !n.includes(TEMP_MARKER)), `temp files left: ${onDisk}`);
      }
    });
  }

  test("read with ranges", async ({ provider }) => {
    const data = patterned(1_000_000, 9);
    await put(provider, "r", data);
    const cases: Array<[ByteRange, number, number]> = [
      [{ offset: 0, length: 10 }, 0, 10],
      [{ offset: 123_457, length: 300_001 }, 123_457, 423_458],
      [{ offset: 999_990, length: 10 }, 999_990, 1_000_000],
      [{ offset: 999_999, length: 1 }, 999_999, 1_000_000],
      [{ offset: 500_000, length: 0 }, 500_000, 500_000],
      [{ offset: 1_000_000, length: 5 }, 1_000_000, 1_000_000], // at the end: empty
      [{ offset: 999_000, length: 5_000_000 }, 999_000, 1_000_000], // clamps
      [{ offset: 0, length: 1_000_000 }, 0, 1_000_000],
      [{ offset: 0, length: 2 ** 40 }, 0, 1_000_000],
    ];
    for (const [range, start, end] of cases) {
      const got = await get(provider, "r", range);
      assertEquals(got.byteLength, end - start, `length for ${JSON.stringify(range)}`);
      assertEquals(sha256(got), sha256(data.subarray(start, end)), JSON.stringify(range));
    }
    assertEquals(sha256(await get(provider, "r")), sha256(data));
    // a cancelled read releases its resources (the test sanitizers check for leaks)
    const stream = await provider.read("r");
    const reader = stream.getReader();
    await reader.read();
    await reader.cancel();
    await expectKind(() => provider.read("missing"), "NotFound");
    await expectKind(() => provider.read("no/such/dir/x"), "NotFound");
    await provider.mkdir("dir");
    await expectKind(() => provider.read("dir"), "IsDirectory");
    await expectKind(() => provider.read("r/below"), "NotFound", "NotDirectory");
  });

  test("list: one level, byte-order names, directories flagged", async ({ provider }) => {
    const files = ["b", "a", "B", "_", "0", "~", "a.b", "a-b", "é", "z"];
    for (const f of files) await put(provider, `l/${f}`, f);
    await provider.mkdir("l/dir");
    await put(provider, "l/sub/deep/file", "deep");
    const listed = await entries(provider, "l");
    const expected = [...files, "dir", "sub"].sort(compareBytes);
    assertEquals(listed.map((e) => e.name), expected);
    for (const e of listed) {
      const isDir = e.name === "dir" || e.name === "sub";
      assertEquals(e.isDirectory, isDir, `isDirectory of ${e.name}`);
      if (!isDir) assertEquals(e.size, text(e.name).byteLength, `size of ${e.name}`);
    }
    assertEquals(await names(provider, "l/sub"), ["deep"]);
    assertEquals(await names(provider, "l/sub/deep"), ["file"]);
    assertEquals(await names(provider, "l/dir"), []);
    assertEquals(await names(provider, ""), ["l"]);
  });

  test("readBytes (when offered) gives exactly what read gives, same errors", async ({ provider }) => {
    if (provider.readBytes === undefined) return;
    const data = patterned(300_000, 7);
    await put(provider, "rb/obj", data);
    await put(provider, "rb/empty", new Uint8Array(0));
    const ranges: (ByteRange | undefined)[] = [
      undefined,
      { offset: 0, length: 4096 },
      { offset: 123_457, length: 4096 },
      { offset: 299_990, length: 4096 }, // clamps at the end
      { offset: 300_000, length: 1 }, // at the end: empty
      { offset: 0, length: 2 ** 40 },
    ];
    for (const range of ranges) {
      const bytes = await provider.readBytes("rb/obj", range);
      assertEquals(
        sha256(bytes),
        sha256(await get(provider, "rb/obj", range)),
        JSON.stringify(range),
      );
    }
    assertEquals((await provider.readBytes("rb/empty")).byteLength, 0);
    await expectKind(() => provider.readBytes!("rb/missing"), "NotFound");
    await expectKind(() => provider.readBytes!("no/such/dir/x"), "NotFound");
    await expectKind(() => provider.readBytes!("rb"), "IsDirectory");
    await expectKind(() => provider.readBytes!("rb/obj/below"), "NotFound", "NotDirectory");
  });

  test("readBytes with the caller's length: same bytes; an object changed since gives another length", async ({ provider }) => {
    if (provider.readBytes === undefined) return;
    const data = patterned(10_000, 3);
    await put(provider, "rx/obj", data);
    assertEquals(sha256(await provider.readBytes("rx/obj", undefined, 10_000)), sha256(data));
    const range = { offset: 1234, length: 4096 };
    assertEquals(
      sha256(await provider.readBytes("rx/obj", range, 4096)),
      sha256(data.subarray(1234, 1234 + 4096)),
    );
    await put(provider, "rx/empty", new Uint8Array(0));
    assertEquals((await provider.readBytes("rx/empty", undefined, 0)).byteLength, 0);
    // replaced after the caller's stat: longer, then shorter
    await put(provider, "rx/obj", patterned(10_001, 4));
    assert((await provider.readBytes("rx/obj", undefined, 10_000)).byteLength !== 10_000, "grew");
    await put(provider, "rx/obj", patterned(5_000, 5));
    assert((await provider.readBytes("rx/obj", undefined, 10_000)).byteLength !== 10_000, "shrank");
    assert((await provider.readBytes("rx/obj", range, 4096)).byteLength !== 4096, "range cut");
    await provider.delete("rx/obj");
    await expectKind(() => provider.readBytes!("rx/obj", undefined, 10_000), "NotFound");
  });

  test("listNames (when offered) lists exactly what list lists, in the same order", async ({ provider }) => {
    if (provider.listNames === undefined) return;
    const files = ["b", "a", "B", "\uFF61", "\u{1F600}", "a.b"];
    for (const f of files) await put(provider, `n/${f}`, f);
    await put(provider, "n/sub/x", "x");
    const pending = await stage(provider, "n/pending", "not yet");
    try {
      const listed = await entries(provider, "n");
      const named = await provider.listNames("n");
      assertEquals(
        named,
        listed.map((e) => ({ name: e.name, isDirectory: e.isDirectory })),
      );
      assertEquals(await provider.listNames(""), [{ name: "n", isDirectory: true }]);
      await expectKind(() => provider.listNames!("missing"), "NotFound");
    } finally {
      await pending.abort();
    }
  });

  test("list sorts by UTF-8 byte order, not UTF-16 code units", async ({ provider }) => {
    // U+FF61 is EF BD A1 in UTF-8, U+1F600 is F0 9F 98 80: byte order puts U+FF61 first,
    // while JavaScript's default string comparison (UTF-16 units FF61 vs D83D) does not.
    const files = ["\u{1F600}", "\uFF61", "a"];
    for (const f of files) await put(provider, `u/${f}`, f);
    assertEquals(await names(provider, "u"), ["a", "\uFF61", "\u{1F600}"]);
  });

  test("list skips in-progress uploads", async ({ provider }) => {
    await put(provider, "p/done", "done");
    const pending = await stage(provider, "p/pending", "not yet");
    const fresh = await stage(provider, "p/fresh/x", "not yet");
    try {
      assertEquals(await names(provider, "p"), ["done", "fresh"]);
      assertEquals(await names(provider, "p/fresh"), []);
    } finally {
      await pending.abort();
      await fresh.abort();
    }
    // No object remains; the directory the aborted upload created may (memory, s3) or may not
    // (fs: removed when still empty) remain.
    const after = await names(provider, "p");
    assert(
      JSON.stringify(after) === '["done"]' || JSON.stringify(after) === '["done","fresh"]',
      JSON.stringify(after),
    );
    if (after.includes("fresh")) assertEquals(await names(provider, "p/fresh"), []);
  });

  test("list of a missing directory or of a file", async ({ provider, rootPath }) => {
    await expectKind(() => entries(provider, "missing"), "NotFound");
    await expectKind(() => entries(provider, "missing/deeper"), "NotFound");
    await put(provider, "file", "x");
    if (rootPath) await expectKind(() => entries(provider, "file"), "NotDirectory");
    else await expectKind(() => entries(provider, "file"), "NotDirectory", "NotFound");
  });

  test("delete returns the size, null when missing, IsDirectory for a directory", async ({ provider }) => {
    await put(provider, "del/x", patterned(12345));
    assertEquals(await provider.delete("del/x"), 12345);
    assertEquals(await provider.stat("del/x"), null);
    assertEquals(await provider.delete("del/x"), null);
    assertEquals(await provider.delete("never"), null);
    assertEquals(await provider.delete("no/such/dir/x"), null);
    await put(provider, "empty", "");
    assertEquals(await provider.delete("empty"), 0);
    await provider.mkdir("adir");
    await expectKind(() => provider.delete("adir"), "IsDirectory");
    assertEquals((await provider.stat("adir"))?.isDirectory, true);
    assertEquals(await names(provider, ""), ["adir", "del"]);
  });

  test("move: replace, no-replace, missing source, parents, onto itself", async ({ provider }) => {
    await put(provider, "src", "source");
    await put(provider, "dst", "destination");
    await expectKind(() => provider.move("src", "dst", { replace: false }), "Exists");
    assertEquals(await getText(provider, "src"), "source");
    assertEquals(await getText(provider, "dst"), "destination");

    await provider.move("src", "dst", { replace: true });
    assertEquals(await provider.stat("src"), null);
    assertEquals(await getText(provider, "dst"), "source");

    await provider.move("dst", "new/parents/here", { replace: false });
    assertEquals(await provider.stat("dst"), null);
    assertEquals(await getText(provider, "new/parents/here"), "source");
    assertEquals((await provider.stat("new/parents"))?.isDirectory, true);

    await expectKind(() => provider.move("gone", "x", { replace: true }), "NotFound");
    await expectKind(() => provider.move("no/such/dir", "x", { replace: false }), "NotFound");
    assertEquals(await provider.stat("x"), null);

    await provider.move("new/parents/here", "new/parents/here", { replace: false });
    await provider.move("new/parents/here", "new/parents/here", { replace: true });
    assertEquals(await getText(provider, "new/parents/here"), "source");
    assertEquals(await names(provider, "new/parents"), ["here"]);
  });

  test("mkdir is idempotent; mkdir over a file fails", async ({ provider }) => {
    await provider.mkdir("m/n/o");
    await provider.mkdir("m/n/o");
    await provider.mkdir("m/n");
    await provider.mkdir("");
    assertEquals((await provider.stat("m/n/o"))?.isDirectory, true);
    assertEquals(await names(provider, "m"), ["n"]);
    await put(provider, "m/f", "file");
    await expectKind(() => provider.mkdir("m/f"), "Exists", "NotDirectory");
    await expectKind(() => provider.mkdir("m/f/below"), "NotDirectory", "Exists");
    assertEquals(await getText(provider, "m/f"), "file");
  });

  test("rmdir: empty ok, non-empty NotEmpty, missing NotFound", async ({ provider }) => {
    await provider.mkdir("r/empty");
    await put(provider, "r/full/x", "x");
    await expectKind(() => provider.rmdir("r/full"), "NotEmpty");
    assertEquals(await getText(provider, "r/full/x"), "x");
    await expectKind(() => provider.rmdir("r"), "NotEmpty");
    await provider.rmdir("r/empty");
    assertEquals(await provider.stat("r/empty"), null);
    await expectKind(() => provider.rmdir("r/empty"), "NotFound");
    await expectKind(() => provider.rmdir("no/such"), "NotFound");
    await expectKind(() => provider.rmdir("r/full/x"), "NotDirectory", "NotFound");
    assertEquals(await names(provider, "r"), ["full"]);
  });

  test("removeTree removes a whole subtree and nothing else", async ({ provider }) => {
    await put(provider, "t/a/1", "1");
    await put(provider, "t/a/b/2", "2");
    await provider.mkdir("t/a/c/d");
    await put(provider, "t/keep", "keep");
    await put(provider, "t/a-sibling", "sibling");
    await provider.removeTree("t/a");
    assertEquals(await provider.stat("t/a"), null);
    assertEquals(await provider.stat("t/a/b/2"), null);
    assertEquals(await names(provider, "t"), ["a-sibling", "keep"]);
    await provider.removeTree("t/never-existed");
    assertEquals(await getText(provider, "t/keep"), "keep");
  });

  test("begin without createParents into a missing directory", async ({ provider, rootPath }) => {
    await expectKind(
      async () => await provider.begin("nodir/x", { createParents: false }),
      "NotFound",
    );
    assertEquals(await provider.stat("nodir"), null);
    await provider.mkdir("yes");
    await put(provider, "yes/x", "ok", { createParents: false });
    assertEquals(await getText(provider, "yes/x"), "ok");
    if (rootPath) assertEquals(await diskNames(`${rootPath}/yes`), ["x"]);
  });

  test("unsafe keys are rejected with BadRequest before anything happens", async ({ provider, rootPath }) => {
    await put(provider, "a/b", "content");
    const outsideBefore = rootPath ? await diskNames(`${rootPath}/..`) : [];
    for (const bad of INVALID_KEYS) {
      const label = JSON.stringify(bad);
      const ops: Array<[string, () => unknown]> = [
        ["stat", () => provider.stat(bad)],
        ["list", () => entries(provider, bad)],
        ["read", () => provider.read(bad)],
        ["begin", () => provider.begin(bad)],
        ["delete", () => provider.delete(bad)],
        ["move from", () => provider.move(bad, "moved", { replace: true })],
        ["move to", () => provider.move("a/b", bad, { replace: true })],
        ["mkdir", () => provider.mkdir(bad)],
        ["rmdir", () => provider.rmdir(bad)],
        ["removeTree", () => provider.removeTree(bad)],
      ];
      for (const [op, fn] of ops) {
        try {
          await expectKind(fn, "BadRequest");
        } catch (error) {
          throw new Error(`${op} ${label}: ${(error as Error).message}`);
        }
      }
    }
    assertEquals(await names(provider, ""), ["a"]);
    assertEquals(await names(provider, "a"), ["b"]);
    assertEquals(await getText(provider, "a/b"), "content");
    if (rootPath) {
      assertEquals(await diskNames(`${rootPath}/..`), outsideBefore, "nothing outside the root");
      assertEquals(await diskNames(rootPath), ["a"]);
      assertEquals(await diskNames(`${rootPath}/a`), ["b"]);
    }
  });

  test("failures are promise rejections, never synchronous throws", async ({ provider }) => {
    await put(provider, "file", "x");
    await provider.mkdir("dir/sub");
    const calls: Array<[string, () => unknown]> = [
      ["stat(bad key)", () => provider.stat("../x")],
      ["read(missing)", () => provider.read("missing")],
      ["read(dir)", () => provider.read("dir")],
      ["read(bad key)", () => provider.read("../x")],
      ["begin(bad key)", () => provider.begin("../x")],
      ["begin(no parents)", () => provider.begin("nodir/x", { createParents: false })],
      ["delete(dir)", () => provider.delete("dir")],
      ["move(missing)", () => provider.move("missing", "y", { replace: true })],
      ["move(exists)", () => provider.move("file", "file2", { replace: false })],
      ["mkdir(bad key)", () => provider.mkdir("a//b")],
      ["mkdir(over file)", () => provider.mkdir("file")],
      ["rmdir(non-empty)", () => provider.rmdir("dir")],
      ["rmdir(missing)", () => provider.rmdir("missing")],
      ["removeTree(bad key)", () => provider.removeTree("../x")],
    ];
    await put(provider, "file2", "y");
    const synchronous: string[] = [];
    for (const [label, call] of calls) {
      let result: unknown;
      try {
        result = call();
      } catch {
        synchronous.push(label);
        continue;
      }
      assert(result instanceof Promise, `${label} returns a promise`);
      await result.then(
        () => {
          throw new Error(`${label} should fail`);
        },
        (error) => assert(error instanceof StowageError, `${label}: ${error}`),
      );
    }
    const upload = await provider.begin("exists-check");
    await upload.writable.close();
    await upload.commit({ replace: true });
    let second: unknown;
    try {
      second = upload.commit({ replace: true });
    } catch {
      synchronous.push("commit(twice)");
    }
    if (second instanceof Promise) await second.catch(() => {});
    const loser = await provider.begin("file");
    try {
      const p = loser.commit({ replace: false });
      await p.catch(() => {});
    } catch {
      synchronous.push("commit(exists)");
    } finally {
      await loser.abort();
    }
    assertEquals(synchronous, [], "these threw synchronously instead of rejecting");
  });
}
