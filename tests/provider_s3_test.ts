// The S3 provider against a throw-away Ceph RGW (scripts/ceph-rgw.sh, started by these tests):
// the provider contract twice (defaults: single PUTs; 1 MiB parts, 2-key list pages and no
// directory cache: multipart, continuation and re-sorting everywhere), then what is specific
// to S3: multipart uploads and their memory bound, Content-MD5 checked by RGW (a corrupted part
// is rejected, retried, or fails the upload), conditional no-replace commits, listings past
// 1000 keys, moves by copy and by multipart copy, retries and the Unavailable kind, resumed
// reads, the startup check's messages, and the request builder. Ignored without radosgw unless
// STOWAGE_REQUIRE_PEERS=1.

import { createHash } from "node:crypto";
import { StowageError } from "../src/errors.ts";
import type { Provider } from "../src/storage/provider.ts";
import { multipartEtag, S3Provider } from "../src/storage/s3.ts";
import { md5Base64, S3Client } from "../src/storage/s3_client.ts";
import { isSettled, NameOrder } from "../src/storage/s3_list.ts";
import { parseListPage } from "../src/storage/s3_xml.ts";
import { assert, assertEquals } from "./_assert.ts";
import { CEPH_MISSING, closedEndpoint, lazyCeph } from "./_ceph.ts";
import {
  chunkedStream,
  entries,
  expectKind,
  get,
  getText,
  names,
  patterned,
  providerContract,
  put,
  sha256,
  stage,
} from "./_provider_contract.ts";

const MiB = 1024 * 1024;
const ceph = lazyCeph();

/** Registers a test that needs the cluster (ignored without radosgw). */
function s3Test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `s3: ${name}`, ignore: CEPH_MISSING, fn });
}

// ---------------------------------------------------------------------------------------------
// Unit tests: no cluster needed.

Deno.test("s3 unit: NameOrder re-sorts key order into name order", () => {
  // S3 key order: "a-b", "a.b", "a/" (directory a), "a0", "b"
  const order = new NameOrder<{ name: string }>();
  const out: string[] = [];
  out.push(...order.push({ name: "a-b" }, "a-b").map((e) => e.name));
  out.push(...order.push({ name: "a.b" }, "a.b").map((e) => e.name));
  assertEquals(out, [], "held back until directory a can no longer come");
  out.push(...order.push({ name: "a" }, "a/").map((e) => e.name));
  assertEquals(out, ["a", "a-b", "a.b"]);
  out.push(...order.push({ name: "a0" }, "a0").map((e) => e.name));
  out.push(...order.push({ name: "c d" }, "c d").map((e) => e.name));
  out.push(...order.flush().map((e) => e.name));
  assertEquals(out, ["a", "a-b", "a.b", "a0", "c d"]);
  assert(isSettled("abc", ""), "no character below '/'");
  assert(!isSettled("x.y", "x.y"));
  assert(isSettled("x.y", "x0"));
});

Deno.test("s3 unit: request builder encodes keys, signs, and sends Content-MD5", async () => {
  const client = new S3Client({
    endpoint: "http://127.0.0.1:9000",
    bucket: "bucket",
    credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
  });
  assertEquals(client.pathStyle, true, "an IP endpoint is path-style");
  assertEquals(
    client.url("dir/a b+c%(x)*é", [["list-type", "2"], ["uploads", ""], ["prefix", "a/b c"]]),
    "http://127.0.0.1:9000/bucket/dir/a%20b%2Bc%25%28x%29%2A%C3%A9?list-type=2&uploads&prefix=a%2Fb%20c",
  );
  const body = new TextEncoder().encode("payload");
  const request = await client.signed({ method: "PUT", key: "k", body });
  assertEquals(request.headers.get("content-md5"), md5Base64(body));
  assertEquals(request.headers.get("content-md5"), "Mhw89IbtUJFk7eweGYH+yA==");
  assertEquals(request.headers.get("x-amz-content-sha256"), "UNSIGNED-PAYLOAD");
  assert(request.headers.get("authorization")!.startsWith("AWS4-HMAC-SHA256 Credential=AKID/"));
  assert(request.headers.get("authorization")!.includes("content-md5"), "Content-MD5 is signed");
  await request.body?.cancel();

  const hosted = new S3Client({
    endpoint: "https://s3.eu-west-1.amazonaws.com",
    region: "eu-west-1",
    bucket: "my-bucket",
    credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
  });
  assertEquals(hosted.pathStyle, false, "virtual-host style for DNS endpoints");
  assertEquals(hosted.url("x/y"), "https://my-bucket.s3.eu-west-1.amazonaws.com/x/y");
  const signing = new S3Client({
    endpoint: "https://s3.eu-west-1.amazonaws.com",
    region: "eu-west-1",
    bucket: "my-bucket",
    credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
    signPayload: true,
  });
  const signed = await signing.signed({ method: "PUT", key: "k", body });
  assertEquals(signed.headers.get("x-amz-content-sha256"), sha256(body));
  await signed.body?.cancel();
  assertEquals(hosted.copySource("a b/c"), "/my-bucket/a%20b/c");
});

Deno.test("s3 unit: ListObjectsV2 pages decode URL-encoded keys and entities", () => {
  const page = parseListPage(
    `<?xml version="1.0"?><ListBucketResult><EncodingType>url</EncodingType>` +
      `<IsTruncated>true</IsTruncated><Contents><Key>p%2Fa+b%2Bc&amp;</Key>` +
      `<LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag>` +
      `<Size>12</Size></Contents><CommonPrefixes><Prefix>p%2Fd%20e%2F</Prefix></CommonPrefixes>` +
      `<NextContinuationToken>t+1/=</NextContinuationToken></ListBucketResult>`,
  );
  assertEquals(page.objects, [{
    key: "p/a b+c&",
    size: 12,
    lastModifiedMs: Date.UTC(2024, 0, 2, 3, 4, 5),
    etag: "abc",
  }]);
  assertEquals(page.prefixes, ["p/d e/"]);
  assertEquals(page.truncated, true);
  assertEquals(page.next, "t+1/=");
});

Deno.test("s3 unit: option validation and the multipart ETag", () => {
  const base = {
    endpoint: "http://127.0.0.1:1",
    bucket: "b",
    credentials: { accessKeyId: "a", secretAccessKey: "TOPSECRET" },
  };
  const invalid = [
    { ...base, endpoint: "ftp://x" },
    { ...base, endpoint: "not a url" },
    { ...base, bucket: "" },
    { ...base, credentials: { accessKeyId: "", secretAccessKey: "s" } },
    { ...base, prefix: "a/../b" },
    { ...base, partSize: 1000 },
    { ...base, partSize: 2 * MiB, multipartThreshold: 4 * MiB },
    { ...base, listPageSize: 1001 },
    { ...base, endpoint: "https://s3.example.com", bucket: "Not_DNS" },
  ];
  for (const options of invalid) {
    let threw = false;
    try {
      new S3Provider(options);
    } catch (error) {
      threw = error instanceof TypeError;
    }
    assert(threw, `accepted ${JSON.stringify(options)}`);
  }
  const provider = new S3Provider({ ...base, prefix: "/backups/x/" });
  assertEquals(provider.prefix, "backups/x");
  assertEquals(provider.objectKey(""), "backups/x");
  assertEquals(provider.objectKey("r/data"), "backups/x/r/data");
  assert(!provider.description.includes("TOPSECRET"), "no secret in the description");
  // parts "a" and "b": S3's rule is md5(concat(binary part MD5s)) + "-" + part count
  assertEquals(
    multipartEtag(["0cc175b9c0f1b6a831c399e269772661", "92eb5ffee6ae2fec3ad71c777531578f"]),
    "96e024ba2074fe77e8e965ba43a704be-2",
  );
});

// ---------------------------------------------------------------------------------------------
// The contract.

if (!CEPH_MISSING) {
  providerContract("s3", async () => {
    const provider = (await ceph.get()).provider("contract");
    return { provider, cleanup: () => provider.removeTree("") };
  });

  providerContract("s3 (1 MiB parts, 2-key pages, no directory cache)", async () => {
    const provider = (await ceph.get()).provider("contract-small", {
      partSize: MiB,
      multipartThreshold: MiB,
      listPageSize: 2,
      dirCacheMs: 0,
    });
    return { provider, cleanup: () => provider.removeTree("") };
  });
} else {
  Deno.test({ name: "s3: provider contract (radosgw not installed)", ignore: true, fn() {} });
}

// ---------------------------------------------------------------------------------------------
// Fault injection: a fetch that sees (and may change) every request the provider sends.

interface Seen {
  method: string;
  url: URL;
  status: number;
}

type Tamper = (request: Request, index: number) => Promise<Response | Request | null>;

/** A fetch recording every request; `tamper` may answer itself or replace the request. */
function recordingFetch(tamper?: Tamper) {
  const seen: Seen[] = [];
  let active = 0;
  let maxActiveParts = 0;
  const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    let request = new Request(input, init);
    const index = seen.length;
    const record: Seen = { method: request.method, url: new URL(request.url), status: 0 };
    seen.push(record);
    const isPart = record.url.searchParams.has("partNumber");
    if (isPart) maxActiveParts = Math.max(maxActiveParts, ++active);
    try {
      const changed = tamper ? await tamper(request, index) : null;
      if (changed instanceof Response) {
        record.status = changed.status;
        return changed;
      }
      if (changed instanceof Request) request = changed;
      const response = await fetch(request);
      record.status = response.status;
      return response;
    } finally {
      if (isPart) active--;
    }
  };
  return {
    fetch: wrapped as typeof fetch,
    seen,
    maxActiveParts: () => maxActiveParts,
    parts: () => seen.filter((s) => s.method === "PUT" && s.url.searchParams.has("partNumber")),
  };
}

/** The same request with one byte of the body flipped (Content-MD5 unchanged). */
async function corrupted(request: Request): Promise<Request> {
  const body = new Uint8Array(await request.arrayBuffer());
  body[Math.floor(body.byteLength / 2)] ^= 0xff;
  return new Request(request.url, { method: request.method, headers: request.headers, body });
}

async function pendingUploads(provider: S3Provider): Promise<number> {
  const { text } = await provider.send({
    method: "GET",
    query: [["uploads", ""], ["prefix", `${provider.prefix}/`]],
    readText: true,
  });
  return (text.match(/<Upload>/g) ?? []).length;
}

async function cleanup(provider: Provider): Promise<void> {
  await provider.removeTree("");
}

// ---------------------------------------------------------------------------------------------
// S3-specific behaviour.

s3Test(
  "multipart above the threshold: parts streamed, bounded in flight, exact bytes",
  async () => {
    const cluster = await ceph.get();
    const recorder = recordingFetch();
    const provider = cluster.provider("multipart", {
      partSize: MiB,
      multipartThreshold: MiB,
      partConcurrency: 2,
      fetch: recorder.fetch,
    });
    try {
      const data = patterned(5 * MiB + 12345, 42);
      const upload = await provider.begin("big/object");
      await chunkedStream(data, 100_000).pipeTo(upload.writable);
      assertEquals(recorder.parts().length >= 4, true, "parts are sent while the body streams");
      assertEquals(await provider.stat("big/object"), null, "invisible before commit");
      await upload.commit({ replace: false });
      const parts = recorder.parts();
      assertEquals(parts.length, 6);
      assertEquals(parts.map((p) => p.url.searchParams.get("partNumber")).sort(), [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
      ]);
      assert(
        recorder.maxActiveParts() <= 2,
        `at most 2 parts in flight: ${recorder.maxActiveParts()}`,
      );
      assert(recorder.seen.some((s) => s.method === "POST" && s.url.searchParams.has("uploads")));
      assert(recorder.seen.some((s) => s.method === "POST" && s.url.searchParams.has("uploadId")));
      assertEquals((await provider.stat("big/object"))?.size, data.byteLength);
      assertEquals(sha256(await get(provider, "big/object")), sha256(data));
      const { response } = await provider.send({
        method: "HEAD",
        key: `${provider.prefix}/big/object`,
      });
      const partMd5s = [0, 1, 2, 3, 4, 5].map((i) =>
        createHash("md5").update(data.subarray(i * MiB, (i + 1) * MiB)).digest("hex")
      );
      assertEquals(response.headers.get("etag"), `"${multipartEtag(partMd5s)}"`, "S3's ETag rule");
      // ranges across part boundaries
      for (const [offset, length] of [[MiB - 10, 20], [3 * MiB - 1, MiB + 2], [5 * MiB, 20000]]) {
        const got = await get(provider, "big/object", { offset, length });
        assertEquals(sha256(got), sha256(data.subarray(offset, offset + length)));
      }
      // exactly the threshold: one PUT
      const before = recorder.seen.length;
      await put(provider, "exact", patterned(MiB, 1));
      const puts = recorder.seen.slice(before).filter((s) =>
        s.method === "PUT" && s.url.pathname.endsWith("/exact")
      );
      assertEquals(puts.length, 1);
      assert(!recorder.seen.slice(before).some((s) => s.url.searchParams.has("uploads")));
      assertEquals(await pendingUploads(provider), 0, "no multipart upload left behind");
    } finally {
      await cleanup(provider);
    }
  },
);

s3Test(
  "Content-MD5: RGW rejects a corrupted part; it is retried, or the upload fails whole",
  async () => {
    const cluster = await ceph.get();
    let corruptions = 0;
    const once = recordingFetch(async (request) => {
      if (corruptions === 0 && new URL(request.url).searchParams.get("partNumber") === "2") {
        corruptions++;
        return await corrupted(request);
      }
      return null;
    });
    const provider = cluster.provider("md5", {
      partSize: MiB,
      multipartThreshold: MiB,
      fetch: once.fetch,
    });
    try {
      const data = patterned(3 * MiB, 5);
      await put(provider, "retried", data, { replace: false });
      assertEquals(corruptions, 1);
      const part2 = once.parts().filter((p) => p.url.searchParams.get("partNumber") === "2");
      assertEquals(part2.map((p) => p.status), [400, 200], "BadDigest, then the retry");
      assertEquals(sha256(await get(provider, "retried")), sha256(data));

      // with a signed payload too (RGW answers BadDigest, or SignatureDoesNotMatch when the
      // payload hash is checked first): retried
      corruptions = 0;
      const signing = new S3Provider(cluster.options({
        prefix: provider.prefix,
        partSize: MiB,
        multipartThreshold: MiB,
        signPayload: true,
        fetch: once.fetch,
      }));
      const before = once.parts().length;
      await put(signing, "signed", data, { replace: false });
      const signedPart2 = once.parts().slice(before).filter((p) =>
        p.url.searchParams.get("partNumber") === "2"
      );
      assertEquals(signedPart2.length, 2);
      assert([400, 403].includes(signedPart2[0].status), `rejected: ${signedPart2[0].status}`);
      assertEquals(signedPart2[1].status, 200);
      assertEquals(sha256(await get(provider, "signed")), sha256(data));

      // a single PUT corrupted every time: the store never accepts it
      const always = recordingFetch(async (request) =>
        request.method === "PUT" ? await corrupted(request) : null
      );
      const retry = { tries: 2, baseDelayMs: 10 };
      const prefix = provider.prefix;
      const broken = new S3Provider(
        cluster.options({ prefix, fetch: always.fetch, retry, signPayload: false }),
      );
      await provider.mkdir("d");
      const error = await expectKind(() => put(broken, "d/never", patterned(1000, 1)), "Internal");
      assert(/BadDigest/.test(error.detail ?? ""), error.detail);
      assertEquals(await provider.stat("d/never"), null);

      // a multipart upload whose parts are always corrupted: fails, nothing visible, aborted
      const multi = new S3Provider(cluster.options({
        prefix,
        partSize: MiB,
        multipartThreshold: MiB,
        fetch: always.fetch,
        retry,
      }));
      const upload = await multi.begin("d/multi");
      await expectKind(async () => {
        try {
          await chunkedStream(patterned(3 * MiB, 2), 65536).pipeTo(upload.writable);
          await upload.commit({ replace: true });
        } finally {
          await upload.abort();
        }
      }, "Internal");
      assertEquals(await provider.stat("d/multi"), null);
      assertEquals(await pendingUploads(provider), 0, "the multipart upload was aborted");
    } finally {
      await cleanup(provider);
    }
  },
);

s3Test("no-replace: concurrent single PUTs race atomically; multipart checks first", async () => {
  const cluster = await ceph.get();
  const provider = cluster.provider("noreplace", { partSize: MiB, multipartThreshold: MiB });
  try {
    const a = await stage(provider, "race", patterned(1000, 1));
    const b = await stage(provider, "race", patterned(1000, 2));
    const results = await Promise.allSettled([
      a.commit({ replace: false }),
      b.commit({ replace: false }),
    ]);
    assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
    const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert(loser.reason instanceof StowageError && loser.reason.kind === "Exists");
    const winner = results[0].status === "fulfilled" ? 1 : 2;
    assertEquals(sha256(await get(provider, "race")), sha256(patterned(1000, winner)));

    // multipart: the key is checked right before completion
    await put(provider, "big", patterned(2 * MiB + 1, 3), { replace: false });
    const late = await stage(provider, "big", patterned(3 * MiB, 4));
    await expectKind(() => late.commit({ replace: false }), "Exists");
    await late.abort();
    assertEquals(sha256(await get(provider, "big")), sha256(patterned(2 * MiB + 1, 3)));
    assertEquals(await pendingUploads(provider), 0);
    await put(provider, "big", patterned(3 * MiB, 5), { replace: true });
    assertEquals(sha256(await get(provider, "big")), sha256(patterned(3 * MiB, 5)));

    // conditionalPut: false (stores that ignore If-None-Match): check, then PUT
    const checking = new S3Provider({
      ...cluster.options(),
      prefix: provider.prefix,
      conditionalPut: false,
    });
    await expectKind(() => put(checking, "race", "other", { replace: false }), "Exists");
    await put(checking, "fresh", "new", { replace: false });
    assertEquals(await getText(provider, "fresh"), "new");
  } finally {
    await cleanup(provider);
  }
});

s3Test("listing: more than 1000 keys in pages, name order, skipped foreign keys", async () => {
  const cluster = await ceph.get();
  const provider = cluster.provider("list");
  try {
    const count = 1050;
    const all = Array.from({ length: count }, (_, i) => `k${String(i).padStart(5, "0")}`);
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < all.length) {
        const name = all[next++];
        await put(provider, `many/${name}`, name);
      }
    }));
    const listed = await entries(provider, "many");
    assertEquals(listed.length, count);
    assertEquals(listed.map((e) => e.name), all);
    assert(listed.every((e) => e.size === 6 && !e.isDirectory));

    // directory "a" sorts before "a-b" and "a.b" although S3 lists "a/" after them
    for (const n of ["a-b", "a.b", "a0", "a/x", "b"]) await put(provider, `order/${n}`, n);
    await provider.mkdir("order/a.b.dir");
    const small = new S3Provider({
      ...cluster.options(),
      prefix: provider.prefix,
      listPageSize: 1,
    });
    for (const p of [provider, small]) {
      assertEquals(await names(p, "order"), ["a", "a-b", "a.b", "a.b.dir", "a0", "b"]);
    }

    // keys written by other tools that are no valid names are skipped; their directories count
    for (const key of ["foreign//double", "foreign/ctl\u0001", "foreign/ok", "foreign/sub/x"]) {
      const { response } = await provider.send({
        method: "PUT",
        key: `${provider.prefix}/${key}`,
        body: new TextEncoder().encode("x"),
      });
      await response.body?.cancel();
    }
    assertEquals(await names(provider, "foreign"), ["ok", "sub"]);
    await expectKind(() => provider.rmdir("foreign/sub"), "NotEmpty");
    assertEquals((await provider.stat("foreign/sub"))?.isDirectory, true, "implicit directory");
  } finally {
    await cleanup(provider);
  }
});

s3Test("move: copy + delete; UploadPartCopy above the copy threshold", async () => {
  const cluster = await ceph.get();
  const recorder = recordingFetch();
  const provider = cluster.provider("move", {
    multipartCopyThreshold: 2 * MiB,
    copyPartSize: MiB,
    fetch: recorder.fetch,
  });
  try {
    const small = patterned(10_000, 1);
    await put(provider, "a/small", small);
    await provider.move("a/small", "b/c/small.del", { replace: false });
    assertEquals(await provider.stat("a/small"), null);
    assertEquals(sha256(await get(provider, "b/c/small.del")), sha256(small));
    assertEquals(await names(provider, "a"), [], "the source directory stays");

    const big = patterned(3 * MiB + 17, 2);
    await put(provider, "a/big", big);
    const before = recorder.seen.length;
    await provider.move("a/big", "b/big", { replace: false });
    const copies = recorder.seen.slice(before).filter((s) =>
      s.method === "PUT" && s.url.searchParams.has("partNumber")
    );
    assertEquals(copies.length, 4, "UploadPartCopy in 1 MiB parts");
    assertEquals(sha256(await get(provider, "b/big")), sha256(big));
    assertEquals(await provider.stat("a/big"), null);

    await put(provider, "a/other", "other");
    await expectKind(() => provider.move("a/other", "b/big", { replace: false }), "Exists");
    await provider.move("a/other", "b/big", { replace: true });
    assertEquals(await getText(provider, "b/big"), "other");
    await expectKind(() => provider.move("b/big", "b/c", { replace: true }), "IsDirectory");
    assertEquals(await pendingUploads(provider), 0);
  } finally {
    await cleanup(provider);
  }
});

s3Test("errors: 5xx retried with backoff, then Unavailable; 403 Internal; 404 bucket", async () => {
  const cluster = await ceph.get();
  let failures = 2;
  const flaky = recordingFetch((request) => {
    if (request.method === "PUT" && failures > 0) {
      failures--;
      return Promise.resolve(new Response("<Error><Code>SlowDown</Code></Error>", { status: 503 }));
    }
    return Promise.resolve(null);
  });
  const provider = cluster.provider("errors", {
    fetch: flaky.fetch,
    retry: { baseDelayMs: 20 },
  });
  try {
    await put(provider, "x", "survives two 503s");
    assertEquals(await getText(provider, "x"), "survives two 503s");
    assertEquals(flaky.seen.filter((s) => s.status === 503).length, 2);

    const down = new S3Provider({
      ...cluster.options(),
      prefix: provider.prefix,
      retry: { tries: 5, baseDelayMs: 50, maxTotalMs: 2000 },
      fetch: (() => Promise.resolve(new Response("", { status: 503 }))) as typeof fetch,
    });
    const started = Date.now();
    await expectKind(() => down.stat("x"), "Unavailable");
    const took = Date.now() - started;
    assert(took >= 50 && took < 3000, `bounded backoff: ${took} ms`);

    const unreachable = new S3Provider({
      ...cluster.options(),
      endpoint: closedEndpoint(),
      retry: { tries: 2, baseDelayMs: 10 },
    });
    await expectKind(() => unreachable.stat("x"), "Unavailable");
    await expectKind(() => unreachable.check(), "Unavailable");

    const wrongSecret = new S3Provider({
      ...cluster.options(),
      credentials: { accessKeyId: cluster.accessKeyId, secretAccessKey: "wrong" },
    });
    const denied = await expectKind(() => wrongSecret.stat("x"), "Internal");
    assert(/SignatureDoesNotMatch/.test(denied.detail ?? ""), denied.detail);
    const noBucket = new S3Provider({ ...cluster.options(), bucket: "no-such-bucket" });
    await expectKind(() => noBucket.stat("x"), "Internal");

    const quota = recordingFetch((request) =>
      Promise.resolve(
        request.method === "PUT"
          ? new Response("<Error><Code>QuotaExceeded</Code></Error>", { status: 403 })
          : null,
      )
    );
    const full = new S3Provider({
      ...cluster.options(),
      prefix: provider.prefix,
      fetch: quota.fetch,
    });
    await expectKind(() => put(full, "y", "data"), "QuotaExceeded");
  } finally {
    await cleanup(provider);
  }
});

s3Test("check(): one clear line for each startup problem", async () => {
  const cluster = await ceph.get();
  await cluster.provider("check").check();
  const down = closedEndpoint();
  const cases: Array<[Partial<Parameters<typeof cluster.options>[0]>, RegExp]> = [
    [
      { bucket: "missing-bucket" },
      /bucket missing-bucket does not exist at http:\/\/127\.0\.0\.1:\d+$/,
    ],
    [
      { credentials: { accessKeyId: "nobody", secretAccessKey: "x" } },
      /does not know the access key ID$/,
    ],
    [
      { credentials: { accessKeyId: cluster.accessKeyId, secretAccessKey: "x" } },
      /rejected the signature: check the secret access key$/,
    ],
    [
      { endpoint: down, retry: { tries: 1 } },
      new RegExp(`^S3: cannot reach ${down}/stowage: .*(refused|os error)`),
    ],
  ];
  for (const [extra, pattern] of cases) {
    const provider = new S3Provider(cluster.options(extra));
    const error = await expectKind(() => provider.check(), "Internal", "Unavailable");
    assert(pattern.test(error.message), `${error.message} !~ ${pattern}`);
    assert(!error.message.includes("\n"), "one line");
    assert(!error.message.includes(cluster.secretAccessKey), "no secret in the message");
  }
});

s3Test("reads resume after a broken or stalled connection, pinned to the ETag", async () => {
  const cluster = await ceph.get();
  let broken = 0;
  let stall = false;
  const breaking = recordingFetch(async (request) => {
    if (
      request.method !== "GET" || !new URL(request.url).pathname.endsWith("/obj") || broken >= 2
    ) {
      return null;
    }
    broken++;
    const response = await fetch(request);
    // hand out 300 kB, then fail the body
    let sent = 0;
    const reader = response.body!.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= 300_000) {
          if (stall) return await new Promise<void>(() => {}); // never another byte
          await reader.cancel();
          controller.error(new TypeError("connection reset"));
          return;
        }
        const { value, done } = await reader.read();
        if (done) return controller.close();
        sent += value.byteLength;
        controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  });
  const provider = cluster.provider("resume", { fetch: breaking.fetch, requestTimeoutMs: 300 });
  try {
    const data = patterned(2_000_000, 8);
    await put(provider, "obj", data);
    assertEquals(sha256(await get(provider, "obj")), sha256(data));
    assertEquals(broken, 2);
    const ranged = breaking.seen.filter((s) =>
      s.method === "GET" && s.url.pathname.endsWith("/obj")
    );
    assertEquals(ranged.length, 3, "two resumptions");

    // a connection that stops delivering: after the idle timeout the read resumes
    broken = 1;
    stall = true;
    assertEquals(sha256(await get(provider, "obj")), sha256(data));
    assertEquals(broken, 2);
    stall = false;

    // the object changes between the break and the resumption: the read fails
    broken = 1;
    const stream = await provider.read("obj");
    const reader = stream.getReader();
    await reader.read();
    await put(provider, "obj", patterned(2_000_000, 9));
    let failed: unknown = null;
    try {
      while (!(await reader.read()).done) { /* drain */ }
    } catch (error) {
      failed = error;
    }
    assert(failed instanceof StowageError && failed.kind === "Internal", String(failed));
  } finally {
    await cleanup(provider);
  }
});

s3Test("abandoned multipart uploads are invisible and swept", async () => {
  const cluster = await ceph.get();
  const provider = cluster.provider("sweep", { partSize: MiB, multipartThreshold: MiB });
  try {
    const upload = await provider.begin("d/abandoned");
    const writer = upload.writable.getWriter();
    await writer.write(patterned(3 * MiB, 1));
    assertEquals(await pendingUploads(provider), 1);
    assertEquals(await names(provider, "d"), []);
    assertEquals(await provider.sweepUploads(60_000), 0, "young uploads are kept");
    assertEquals(await provider.sweepUploads(0), 1);
    assertEquals(await pendingUploads(provider), 0);
    await expectKind(() => upload.commit({ replace: true }), "NotFound", "Internal");
    assertEquals(await provider.stat("d/abandoned"), null);
  } finally {
    await cleanup(provider);
  }
});

s3Test(
  "directories: markers persist after their last object; removeTree aborts uploads",
  async () => {
    const cluster = await ceph.get();
    const provider = cluster.provider("dirs", { partSize: MiB, multipartThreshold: MiB });
    try {
      await put(provider, "repo/locks/l1", "lock");
      assertEquals(await provider.delete("repo/locks/l1"), 4);
      assertEquals(await names(provider, "repo/locks"), [], "an emptied directory lists as []");
      const pending = await stage(provider, "repo/data/big", patterned(2 * MiB, 1));
      await provider.removeTree("repo");
      assertEquals(await provider.stat("repo"), null);
      assertEquals(await pendingUploads(provider), 0, "removeTree aborted the upload below");
      await expectKind(() => pending.commit({ replace: true }), "NotFound", "Internal");
      assertEquals(await provider.stat("repo/data/big"), null);
      assertEquals(await names(provider, ""), []);
    } finally {
      await cleanup(provider);
    }
  },
);

Deno.test({
  name: "s3: stop the cluster",
  ignore: CEPH_MISSING,
  async fn() {
    await ceph.stop();
  },
});
