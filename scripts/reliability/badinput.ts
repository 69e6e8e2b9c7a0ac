// Part 2, bad-input corpus: a fixed, generated list of malformed requests for both protocols,
// sent over raw sockets (Deno.connect: nothing normalised) and fetch, against two multi-protocol
// servers: one with htpasswd auth (--max-size, --prometheus) and one with --no-auth. Categories:
// path traversal in every encoding (.., %2e%2e, %2E%2E, ..%2f, %252e, overlong UTF-8 %c0%ae,
// backslashes, %5c, NUL, control bytes) aimed at a sentinel directory beside the data directory;
// over-long names and headers (64 KiB+); bad, huge and negative ranges; wrong and missing hashes;
// wrong Content-Length (short: body cut by closing; long: extra bytes), broken chunking; invalid
// defrag JSON and parameters; unknown methods; missing and wrong Accept; bad Authorization
// (malformed base64, 100 KiB, non-UTF-8 bytes); garbage request lines. Invalid `--permissions`
// values go to the CLI (runStowage).
// Every request is classified "nochange" (it must change nothing: it is malformed, refused, a
// read, or a write with a wrong body, hash or length) or "contained" (a traversal attempt with a
// valid body that may legitimately create something inside the data directory). After each
// request the data directory and its parent (sentinel sibling directory, a file beside it) are
// snapshotted: any change outside the data directory, or any persistent change after a
// "nochange" request, is counted. A 5xx counts unless the spec prescribes it (rest-server's 500
// for a truncated config upload and for a repository path through a file, borgstore's 500 for
// operations on directories); those are reported separately.

import { runStowage } from "../../tests/_server.ts";
import {
  atLeast,
  basic,
  BORG,
  copyBytes,
  diffTrees,
  type Figure,
  htpasswdSha,
  INFO,
  ONE,
  type PartContext,
  rawStatus,
  RESTIC_V2,
  type Server,
  sha256Hex,
  sleep,
  snapshotTree,
  startServe,
  tryRequest,
  ZERO,
} from "./common.ts";

const ABC = sha256Hex("abc");
const FOO = sha256Hex("foobar");
const DIG = sha256Hex("0123456789");
const BIG = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
const BIG_ID = sha256Hex(BIG);
/** Content that is nowhere yet: a valid upload of it would change the data directory. */
const NEW_BODY = "reliability new object";
const NEW_ID = sha256Hex(NEW_BODY);

type Kind = "nochange" | "contained";

interface Case {
  label: string;
  kind: Kind;
  /** The spec prescribes a 5xx for this request. */
  spec5xx?: boolean;
  raw?: { bytes: string | Uint8Array; halfClose?: boolean; head?: boolean };
  fetch?: { method: string; path: string; headers?: Record<string, string>; body?: BodyInit };
}

const enc = new TextEncoder();

function concatBytes(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((p) => typeof p === "string" ? enc.encode(p) : p);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Options for building raw requests against one server. */
interface RawContext {
  auth: string | null;
}

function rawRequest(
  rc: RawContext,
  method: string,
  target: string,
  options: {
    headers?: string[];
    body?: string | Uint8Array;
    borg?: boolean;
    contentLength?: string | null;
    noAuth?: boolean;
  } = {},
): Uint8Array {
  const headers = ["Host: 127.0.0.1", "Connection: close"];
  if (options.borg) headers.push(`Accept: ${BORG}`);
  if (rc.auth && !options.noAuth) headers.push(`Authorization: ${rc.auth}`);
  const body = options.body ?? "";
  const length = typeof body === "string" ? enc.encode(body).byteLength : body.byteLength;
  if (options.contentLength !== null) {
    if (options.contentLength !== undefined) {
      headers.push(`Content-Length: ${options.contentLength}`);
    } else if (length > 0 || method === "POST") headers.push(`Content-Length: ${length}`);
  }
  headers.push(...(options.headers ?? []));
  return concatBytes(`${method} ${target} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n`, body);
}

const TRAVERSALS = [
  "..",
  "%2e%2e",
  "%2E%2E",
  ".%2e",
  "%2e.",
  "%2e%2E",
  "..%2f..",
  "..%2F..",
  "%2e%2e%2f%2e%2e",
  "%252e%252e",
  "%25%32%65%25%32%65",
  "%c0%ae%c0%ae",
  "%c0%2e%c0%2e",
  "%e0%80%ae%e0%80%ae",
  "..%c0%af..",
  "..%255c..",
  "..\\..",
  "..%5c..",
  "..%5C..",
  "%2e%2e%5c",
  ".",
  "%2e",
  "...",
  "..;",
  "%00",
  "..%00",
  "%2e%2e%00",
  ".%00.",
  "%0d%0a",
  "%0a",
  "%09",
  "%7f",
  "%ff",
  "%u002e%u002e",
];

function traversalCases(rc: RawContext): Case[] {
  const cases: Case[] = [];
  for (const t of TRAVERSALS) {
    const r = (label: string, kind: Kind, bytes: Uint8Array) =>
      cases.push({ label: `traversal ${label} [${t}]`, kind, raw: { bytes } });
    r("restic GET sentinel config", "nochange", rawRequest(rc, "GET", `/${t}/sentinel/config`));
    r("restic GET via repo", "nochange", rawRequest(rc, "GET", `/r/${t}/${t}/sentinel/config`));
    r(
      "restic POST key",
      "contained",
      rawRequest(rc, "POST", `/${t}/sentinel/keys/${ABC}`, { body: "abc" }),
    );
    r(
      "restic DELETE sentinel key",
      "contained", // dot segments are resolved first: this may delete an object inside
      rawRequest(rc, "DELETE", `/${t}/${t}/sentinel/keys/${ABC}`),
    );
    r(
      "borg GET sentinel pack",
      "nochange",
      rawRequest(rc, "GET", `/b/${t}/sentinel/packs/00/0000`, { borg: true }),
    );
    r(
      "borg POST item",
      "contained",
      rawRequest(rc, "POST", `/b/${t}/${t}/sentinel/pwn`, {
        borg: true,
        body: "pwn",
        headers: [`X-Content-hash-sha256: ${sha256Hex("pwn")}`],
      }),
    );
    r(
      "borg DELETE sentinel pack",
      "nochange",
      rawRequest(rc, "DELETE", `/b/${t}/${t}/sentinel/packs/00/0000`, { borg: true }),
    );
    r(
      "borg move out of the store",
      "nochange",
      rawRequest(rc, "POST", `/b/?cmd=move&current=${t}/${t}/sentinel/packs/00/0000&new=stolen`, {
        borg: true,
      }),
    );
    r(
      "borg move into the sentinel",
      "contained", // %252e is a literal "%2e": a legal name inside the store
      rawRequest(rc, "POST", `/b/?cmd=move&current=file2&new=${t}/${t}/sentinel/moved`, {
        borg: true,
      }),
    );
    r(
      "borg destroy",
      "contained", // "..." or "..;" is a legal store name (created by an earlier request)
      rawRequest(rc, "DELETE", `/${t}/?cmd=destroy`, { borg: true }),
    );
  }
  return cases;
}

function longCases(rc: RawContext): Case[] {
  const long = "a".repeat(70_000);
  const seg300 = "x".repeat(300);
  const c = (label: string, bytes: Uint8Array, kind: Kind = "nochange"): Case => ({
    label: `long ${label}`,
    kind,
    raw: { bytes },
  });
  return [
    c("restic object name 70 KB", rawRequest(rc, "GET", `/r/data/${long}`)),
    c("restic POST object name 70 KB", rawRequest(rc, "POST", `/r/keys/${long}`, { body: "abc" })),
    c("borg item name 70 KB", rawRequest(rc, "POST", `/b/${long}`, { borg: true, body: "x" })),
    c("restic repo name 300", rawRequest(rc, "GET", `/${seg300}/config`)),
    c(
      "restic POST into repo 300",
      rawRequest(rc, "POST", `/${seg300}/keys/${ABC}`, { body: "abc" }),
    ),
    c("restic create repo 300", rawRequest(rc, "POST", `/${seg300}/?create=true`)),
    c("borg create store 300", rawRequest(rc, "POST", `/${seg300}/?cmd=create`, { borg: true })),
    c("borg item 101", rawRequest(rc, "POST", `/b/${"z".repeat(101)}`, { borg: true, body: "x" })),
    c(
      "borg move target 70 KB",
      rawRequest(rc, "POST", `/b/?cmd=move&current=file1&new=${long}`, { borg: true }),
    ),
    c(
      "header 70 KB",
      rawRequest(rc, "POST", `/r/data/${NEW_ID}`, {
        body: NEW_BODY,
        headers: [`X-Long: ${long}`],
      }),
    ),
    c("range 70 KB", rawRequest(rc, "GET", `/r/data/${FOO}`, { headers: [`Range: ${long}`] })),
    c("accept 70 KB", rawRequest(rc, "GET", "/b/file1", { headers: [`Accept: ${long}`] })),
    c("header name 70 KB", rawRequest(rc, "GET", "/r/config", { headers: [`${long}: x`] })),
    c("host 70 KB", rawRequest(rc, "GET", "/health", { headers: [`Host: ${long}`] })),
    c(
      "300 header lines",
      rawRequest(rc, "GET", "/r/config", {
        headers: Array.from({ length: 300 }, (_, i) => `X-H${i}: v`),
      }),
    ),
    c(
      "query 70 KB",
      rawRequest(rc, "POST", `/b/?cmd=hash&algorithm=${long}`, { borg: true }),
    ),
  ];
}

const RANGES = [
  "bytes=abc",
  "bytes=-",
  "bytes=--1",
  "bytes=5-2",
  "bytes=0--1",
  "bytes=-0",
  "bytes=99999999999999999999-",
  "bytes=-99999999999999999999",
  "bytes=0-99999999999999999999",
  "bytes=9007199254740993-9007199254740999",
  "bytes=-1-2",
  "bytes=1e3-",
  "bytes=0x10-0x20",
  "bytes= -5",
  "bytes=-5000000",
  "bytes=4999-4999",
  "bytes=5000-",
  "items=0-1",
  "bytes=0-1;",
  "bytes=,,,",
  "bytes=0-1,,2-3",
  "bytes=0-0,-1",
  "bytes",
  "=",
  "bytes=" + Array.from({ length: 2000 }, (_, i) => `${i}-${i}`).join(","),
  "bytes=" + Array.from({ length: 200 }, () => "0-4999").join(","),
  "bytes=" + "9".repeat(400) + "-",
];

function rangeCases(auth: Record<string, string>): Case[] {
  const cases: Case[] = [];
  for (const range of RANGES) {
    const label = range.length > 40 ? `${range.slice(0, 40)}… (${range.length})` : range;
    cases.push({
      label: `range restic ${label}`,
      kind: "nochange",
      fetch: { method: "GET", path: `/r/data/${BIG_ID}`, headers: { ...auth, range } },
    });
    cases.push({
      label: `range borg ${label}`,
      kind: "nochange",
      fetch: { method: "GET", path: "/b/file1", headers: { ...auth, accept: BORG, range } },
    });
    cases.push({
      label: `range restic config ${label}`,
      kind: "nochange",
      fetch: { method: "GET", path: "/r/config", headers: { ...auth, range } },
    });
  }
  return cases;
}

function hashCases(auth: Record<string, string>): Case[] {
  const borgStore = (label: string, hash: string | null, body = NEW_BODY): Case => ({
    label: `hash borg ${label}`,
    kind: "nochange",
    fetch: {
      method: "POST",
      path: "/b/new/item",
      headers: {
        ...auth,
        accept: BORG,
        ...(hash === null ? {} : { "x-content-hash-sha256": hash }),
      },
      body,
    },
  });
  const restic = (label: string, path: string, body: string): Case => ({
    label: `hash restic ${label}`,
    kind: "nochange",
    fetch: { method: "POST", path, headers: auth, body },
  });
  return [
    restic("data wrong body", `/r/data/${NEW_ID}`, "not the content"),
    restic("keys wrong body", `/r/keys/${NEW_ID}`, NEW_BODY + " "),
    restic("snapshots empty body", `/r/snapshots/${NEW_ID}`, ""),
    restic("uppercase ID", `/r/data/${NEW_ID.toUpperCase()}`, NEW_BODY),
    restic("63-char ID", `/r/data/${NEW_ID.slice(1)}`, NEW_BODY),
    restic("65-char ID", `/r/data/${NEW_ID}0`, NEW_BODY),
    restic("existing ID, other bytes", `/r/data/${FOO}`, "foobaz"),
    restic("existing config", "/r/config", "other config"),
    borgStore("wrong", sha256Hex("something else")),
    borgStore("uppercase", sha256Hex(NEW_BODY).toUpperCase()),
    borgStore("63 chars", sha256Hex(NEW_BODY).slice(1)),
    borgStore("non-hex", "z".repeat(64)),
    borgStore("with spaces", ` ${sha256Hex(NEW_BODY)} x`),
    borgStore("sha512 length", "a".repeat(128)),
    borgStore("overwrite with wrong hash", sha256Hex("x"), "changed"),
    {
      label: "hash borg two headers",
      kind: "nochange",
      raw: {
        bytes: rawRequest({ auth: auth.authorization ?? null }, "POST", "/b/new/item", {
          borg: true,
          body: NEW_BODY,
          headers: [
            `X-Content-hash-sha256: ${sha256Hex(NEW_BODY)}`,
            `X-Content-hash-sha256: ${sha256Hex("x")}`,
          ],
        }),
      },
    },
  ];
}

function lengthCases(rc: RawContext): Case[] {
  const cases: Case[] = [];
  const restic = (label: string, bytes: Uint8Array, halfClose = false, spec5xx = false) =>
    cases.push({
      label: `length restic ${label}`,
      kind: "nochange",
      raw: { bytes, halfClose },
      spec5xx,
    });
  const borg = (label: string, bytes: Uint8Array, halfClose = false) =>
    cases.push({ label: `length borg ${label}`, kind: "nochange", raw: { bytes, halfClose } });
  const hash = `X-Content-hash-sha256: ${sha256Hex(NEW_BODY)}`;
  // short: the declared length never arrives, the client closes
  restic(
    "short object",
    rawRequest(rc, "POST", `/r/data/${NEW_ID}`, {
      body: NEW_BODY.slice(0, 5),
      contentLength: "1000",
    }),
    true,
  );
  restic(
    "short config (rest-server: 500)",
    rawRequest(rc, "POST", "/r2/config", { body: "x".repeat(100), contentLength: "1000" }),
    true,
    true,
  );
  borg(
    "short item with hash",
    rawRequest(rc, "POST", "/b/new/item", {
      borg: true,
      body: NEW_BODY.slice(0, 5),
      contentLength: "1000",
      headers: [hash],
    }),
    true,
  );
  borg(
    "short item without hash",
    rawRequest(rc, "POST", "/b/new/item", { borg: true, body: "abc", contentLength: "1000" }),
    true,
  );
  borg(
    "short defrag body",
    rawRequest(rc, "POST", "/b/?cmd=defrag&target=t9", {
      borg: true,
      body: '[["file1", 0',
      contentLength: "1000",
    }),
    true,
  );
  // long: more bytes than declared (the rest becomes a bogus second request)
  restic(
    "long object",
    rawRequest(rc, "POST", `/r/data/${NEW_ID}`, { body: NEW_BODY + "EXTRA", contentLength: "3" }),
  );
  restic(
    "long key (prefix is an existing object)",
    rawRequest(rc, "POST", `/r/keys/${ABC}`, { body: "abcdefghij", contentLength: "3" }),
  );
  borg(
    "long item",
    rawRequest(rc, "POST", "/b/new/item", {
      borg: true,
      body: NEW_BODY,
      contentLength: "3",
      headers: [hash],
    }),
  );
  for (const value of ["-1", "abc", "1e3", "0x10", "5, 5", "5,6", "99999999999999999999", "+5"]) {
    restic(
      `Content-Length: ${value}`,
      rawRequest(rc, "POST", `/r/data/${NEW_ID}`, { body: NEW_BODY, contentLength: value }),
      true,
    );
    borg(
      `Content-Length: ${value}`,
      rawRequest(rc, "POST", "/b/new/item", {
        borg: true,
        body: NEW_BODY,
        contentLength: value,
        headers: [hash],
      }),
      true,
    );
  }
  const huge = "9007199254740993";
  restic(
    "huge Content-Length, tiny body",
    rawRequest(rc, "POST", `/r/data/${NEW_ID}`, { body: NEW_BODY, contentLength: huge }),
    true,
  );
  borg(
    "huge Content-Length, tiny body",
    rawRequest(rc, "POST", "/b/new/item", { borg: true, body: NEW_BODY, contentLength: huge }),
    true,
  );
  const both = (label: string, extra: string[], body: string, halfClose = false) => {
    restic(
      label,
      rawRequest(rc, "POST", `/r/data/${NEW_ID}`, { body, contentLength: null, headers: extra }),
      halfClose,
    );
    borg(
      label,
      rawRequest(rc, "POST", "/b/new/item", {
        borg: true,
        body,
        contentLength: null,
        headers: [...extra, hash],
      }),
      halfClose,
    );
  };
  const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
  both("two Content-Length", ["Content-Length: 5", "Content-Length: 22"], NEW_BODY);
  both(
    "Content-Length and chunked",
    ["Content-Length: 5", "Transfer-Encoding: chunked"],
    chunk(NEW_BODY) + "0\r\n\r\n",
  );
  both("Transfer-Encoding: gzip", ["Transfer-Encoding: gzip"], NEW_BODY);
  both("chunked, bad size", ["Transfer-Encoding: chunked"], "zz\r\nabc\r\n0\r\n\r\n");
  both(
    "chunked, size overflow",
    ["Transfer-Encoding: chunked"],
    "ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
  );
  both("chunked, no last chunk", ["Transfer-Encoding: chunked"], chunk(NEW_BODY.slice(0, 9)), true);
  both("chunked, short chunk", ["Transfer-Encoding: chunked"], "40\r\nabc", true);
  both(
    "chunked, wrong content",
    ["Transfer-Encoding: chunked"],
    chunk("not the content") + "0\r\n\r\n",
  );
  return cases;
}

function defragCases(auth: Record<string, string>): Case[] {
  const defrag = (label: string, query: string, body: string): Case => ({
    label: `defrag ${label}`,
    kind: "nochange",
    fetch: {
      method: "POST",
      path: `/b/?cmd=defrag${query}`,
      headers: { ...auth, accept: BORG },
      body,
    },
  });
  const ok = '[["file1", 0, 1]]';
  const bodies: [string, string][] = [
    ["text", "xyz"],
    ["open brace", "{"],
    ["open arrays", "[["],
    ["short entry", '[["file1"]]'],
    ["huge negative offset", '[["file1", -1e308, 1]]'],
    ["huge size", '[["file1", 0, 1e20]]'],
    ["string numbers", '[["file1", "0", "1"]]'],
    ["null entry", "[null]"],
    ["string", '"str"'],
    ["numbers only", "[[1, 2, 3]]"],
    ["traversal source", '[["../file1", 0, 1]]'],
    ["sentinel source", '[["../../sentinel/packs/00/0000", 0, 1]]'],
    ["uppercase source", '[["FILE1", 0, 1]]'],
    ["missing source last", '[["file1", 0, 1], ["nope", 0, 1]]'],
    ["negative size", '[["file1", 0, -1]]'],
    ["fractional offset", '[["file1", 1.5, 1]]'],
    ["four elements", '[["file1", 0, 1, 4]]'],
    ["BOM", "\ufeff" + ok],
    ["NaN", '[["file1", NaN, 1]]'],
    ["deep nesting", "[".repeat(100_000) + "]".repeat(100_000)],
    [
      "2 MB list ending in a missing source",
      "[" + Array.from({ length: 60_000 }, () => '["file1",0,1]').join(",") + ',["nope",0,1]]',
    ],
    ["temp source", '[[".x.y.stowage-tmp", 0, 1]]'],
    ["quota.hid source", '[["quota.hid", 0, 1]]'],
  ];
  const cases = bodies.map(([label, body]) => defrag(label, "&target=t9", body));
  // JSON with a byte order mark parses (the reference refuses it); harmless
  cases.find((c) => c.label === "defrag BOM")!.kind = "contained";
  const queries: [string, string][] = [
    ["levels=x", "&algorithm=sha256&levels=x"],
    ["levels=-1", "&algorithm=sha256&levels=-1"],
    ["levels=1e9", "&algorithm=sha256&levels=1e9"],
    ["levels=99999999999999999999", "&algorithm=sha256&levels=99999999999999999999"],
    ["namespace=../..", "&algorithm=sha256&namespace=../.."],
    ["namespace=%2e%2e", "&algorithm=sha256&namespace=%2e%2e"],
    ["namespace=/abs", "&algorithm=sha256&namespace=%2Fabs"],
    ["target=../x", "&target=../x"],
    ["target=%2e%2e%2fx", "&target=%2e%2e%2fx"],
    ["target=../../sentinel/x", "&target=..%2F..%2Fsentinel%2Fx"],
    ["target=Bad", "&target=Bad"],
    ["target=x.tmp", "&target=x.tmp"],
    ["target=quota.hid", "&target=quota.hid"],
    ["algorithm=nope", "&algorithm=nope"],
    ["algorithm=shake_128", "&algorithm=shake_128"],
    ["no target nor algorithm", ""],
  ];
  for (const [label, query] of queries) cases.push(defrag(label, query, ok));
  // a negative nesting level means no nesting, as in the reference: a valid request
  cases.find((c) => c.label === "defrag levels=-1")!.kind = "contained";
  return cases;
}

function methodCases(rc: RawContext): Case[] {
  const methods = [
    "PUT",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "FOO",
    "get",
    "G\x01ET",
    "M".repeat(1000),
  ];
  const cases: Case[] = [];
  for (const method of methods) {
    const label = method.length > 20 ? `${method.slice(0, 5)}…` : JSON.stringify(method);
    cases.push({
      label: `method restic ${label}`,
      kind: "nochange",
      raw: {
        bytes: rawRequest(rc, method, "/r/config", {
          body: "x",
          headers: ["Destination: /r/moved"],
        }),
      },
    });
    cases.push({
      label: `method borg ${label}`,
      kind: "nochange",
      raw: {
        bytes: rawRequest(rc, method, "/b/file1", {
          borg: true,
          body: "x",
          headers: ["Destination: /b/moved"],
        }),
      },
    });
  }
  cases.push({
    label: "method DELETE with extra space",
    // RFC 9112 §3 lets a recipient parse the request line on whitespace boundaries; node:http
    // in Deno does, so this may delete the (existing) object it names: contained, not refused
    kind: "contained",
    raw: { bytes: rawRequest(rc, "DELETE ", `/r/data/${FOO}`) },
  });
  cases.push({
    label: "method HEAD with a body",
    kind: "nochange",
    raw: { bytes: rawRequest(rc, "HEAD", "/b/file1", { borg: true, body: "xyz" }), head: true },
  });
  return cases;
}

function acceptCases(rc: RawContext, auth: Record<string, string>): Case[] {
  const store = (label: string, accept: string | null, kind: Kind = "nochange"): Case => ({
    label: `accept ${label}`,
    kind,
    fetch: {
      method: "POST",
      path: "/b/new/accept",
      headers: {
        ...auth,
        ...(accept === null ? {} : { accept }),
        "x-content-hash-sha256": sha256Hex(NEW_BODY),
      },
      body: NEW_BODY,
    },
  });
  const remove = (label: string, accept: string | null): Case => ({
    label: `accept delete ${label}`,
    kind: "nochange",
    fetch: {
      method: "DELETE",
      path: "/b/file1",
      headers: { ...auth, ...(accept === null ? {} : { accept }) },
    },
  });
  const variants: [string, string | null][] = [
    ["missing", null],
    ["text/plain", "text/plain"],
    ["list", `${BORG}, */*`],
    ["parameter", `${BORG}; q=1`],
    ["uppercase", BORG.toUpperCase()],
    ["v2", "application/vnd.x.borgstore.rest.v2"],
    ["restic v2", RESTIC_V2],
    ["*/*", "*/*"],
    ["empty", ""],
  ];
  const cases = variants.flatMap((
    [label, accept],
  ) => [store(label, accept), remove(label, accept)]);
  cases.push(store("leading space (trimmed: a valid request)", ` ${BORG}`, "contained"));
  cases.push({
    label: "accept duplicated header",
    kind: "nochange",
    raw: {
      bytes: rawRequest(rc, "DELETE", "/b/file1", {
        headers: [`Accept: ${BORG}`, `Accept: ${BORG}`],
      }),
    },
  });
  return cases;
}

function authCases(rc: RawContext, authOn: boolean): Case[] {
  const variants: [string, string | Uint8Array][] = [
    ["malformed base64", "Basic !!!notbase64!!!"],
    ["base64 without padding", `Basic ${btoa("alice:pw").replace(/=+$/, "")}`],
    ["no colon", `Basic ${btoa("alicepw")}`],
    ["empty credentials", "Basic "],
    ["scheme only", "Basic"],
    ["two spaces", `Basic  ${btoa("alice:pw")}`],
    ["wrong password", basic("alice", "wrong")],
    ["unknown user", basic("mallory", "pw")],
    ["empty user", basic("", "pw")],
    ["NUL in user", `Basic ${btoa("alice\0:pw")}`],
    ["bearer", "Bearer abc"],
    ["digest", 'Digest username="alice", response="x"'],
    ["base64 of non-UTF-8", `Basic ${btoa("\xff\xfe:\xfd")}`],
    ["100 KiB", `Basic ${"A".repeat(100 * 1024)}`],
    ["100 KiB valid base64", `Basic ${btoa("alice:" + "p".repeat(75_000))}`],
    ["raw non-UTF-8 bytes", concatBytes("Basic ", new Uint8Array([0xff, 0xfe, 0x80, 0x00]))],
    ["raw latin-1 password", concatBytes("Basic ", btoa("alice:pw\xe9"))],
  ];
  const cases: Case[] = [];
  for (const [label, value] of variants) {
    const header = concatBytes("Authorization: ", value);
    const targets: {
      what: string;
      method: string;
      target: string;
      body?: string;
      borg?: boolean;
      extra?: string[];
    }[] = authOn
      ? [
        { what: "restic POST", method: "POST", target: `/r/data/${NEW_ID}`, body: NEW_BODY },
        { what: "restic DELETE", method: "DELETE", target: `/r/data/${FOO}` },
        {
          what: "borg POST",
          method: "POST",
          target: "/b/new/auth",
          body: NEW_BODY,
          borg: true,
          extra: [`X-Content-hash-sha256: ${sha256Hex(NEW_BODY)}`],
        },
        { what: "borg DELETE", method: "DELETE", target: "/b/file1", borg: true },
      ]
      : [
        { what: "restic GET", method: "GET", target: "/r/config" },
        { what: "borg GET", method: "GET", target: "/b/file1", borg: true },
      ];
    for (const t of targets) {
      const head = rawRequest(rc, t.method, t.target, {
        body: t.body,
        borg: t.borg,
        noAuth: true,
        headers: t.extra,
      });
      // splice the Authorization header in before the blank line
      const text = new TextDecoder("latin1").decode(head);
      const end = text.indexOf("\r\n\r\n");
      const bytes = concatBytes(head.subarray(0, end + 2), header, "\r\n", head.subarray(end + 2));
      cases.push({ label: `auth ${label}: ${t.what}`, kind: "nochange", raw: { bytes } });
    }
  }
  return cases;
}

function garbageCases(rc: RawContext): Case[] {
  const g = (
    label: string,
    bytes: string | Uint8Array,
    halfClose = false,
    spec5xx = false,
  ): Case => ({
    label: `garbage ${label}`,
    kind: "nochange",
    raw: { bytes, halfClose },
    spec5xx,
  });
  const random = new Uint8Array(1024).map((_, i) => (i * 131 + 7) & 0xff);
  return [
    g("empty request line", "\r\n\r\n", true),
    g("method only", "GET\r\n\r\n", true),
    // RFC 9110 §15.6.6: 505 for a major version the server does not speak (Go's net/http, and
    // so rest-server, answers the same); node:http said 400
    g("HTTP/9.9", "GET /health HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", false, true),
    g("HTTP/1.0 no host", "GET /r/config HTTP/1.0\r\n\r\n"),
    g("no host", "GET /r/config HTTP/1.1\r\nConnection: close\r\n\r\n"),
    g(
      "absolute form",
      "GET http://evil.example/../../sentinel/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ),
    g("asterisk form", "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    g("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    g("CONNECT authority", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    g("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true, true),
    g(
      "TLS ClientHello",
      new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 3, 3]),
      true,
    ),
    g("binary garbage", random, true),
    g("header without colon", "GET /r/config HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
    g("space before colon", "GET /r/config HTTP/1.1\r\nHost : x\r\n\r\n"),
    g("obs-fold", "GET /r/config HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    g("bare LF", "GET /r/config HTTP/1.1\nHost: x\n\n", true),
    g("bare CR", "GET /r/config HTTP/1.1\rHost: x\r\r", true),
    g("raw control byte in path", rawRequest(rc, "GET", "/r/con\x01fig")),
    g("raw DEL in path", rawRequest(rc, "GET", "/r/con\x7ffig")),
    g("raw tab in path", rawRequest(rc, "GET", "/r/con\tfig")),
    g("raw space in path", rawRequest(rc, "GET", "/r/con fig")),
    g(
      "raw UTF-8 in path",
      concatBytes(
        "GET /r/",
        new Uint8Array([0xc3, 0xa4]),
        " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ),
    ),
    g(
      "raw 0xff in path",
      concatBytes(
        "POST /b/",
        new Uint8Array([0xff]),
        ` HTTP/1.1\r\nHost: x\r\nAccept: ${BORG}\r\nContent-Length: 1\r\n\r\nx`,
      ),
    ),
    g(
      "raw NUL in path",
      concatBytes(
        "GET /r/",
        new Uint8Array([0]),
        "config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ),
    ),
    g("raw CR in path", "GET /r/con\rfig HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    g("NUL in header value", "GET /r/config HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"),
    g("redirect with CR LF", rawRequest(rc, "GET", "//%0d%0aSet-Cookie:%20x=1")),
    g("redirect with NUL", rawRequest(rc, "POST", "//%00", { body: "" })),
    g("redirect with LF", rawRequest(rc, "GET", "//r/%0a")),
    g("redirect with euro sign", rawRequest(rc, "GET", "//%e2%82%ac/config")),
    g("fragment in target", rawRequest(rc, "GET", "/r/config#../../sentinel")),
    {
      label: "garbage dot segments resolved to a path inside",
      kind: "contained",
      raw: { bytes: rawRequest(rc, "POST", `/r/../../sentinel/keys/${ABC}`, { body: "abc" }) },
    },
    {
      label: "garbage query traversal on a valid create",
      kind: "contained",
      raw: { bytes: rawRequest(rc, "POST", "/?create=true&x=../../sentinel") },
    },
  ];
}

function protocolCases(auth: Record<string, string>): Case[] {
  const r = (
    label: string,
    method: string,
    path: string,
    body?: string,
    spec5xx = false,
  ): Case => ({
    label: `restic ${label}`,
    kind: "nochange",
    spec5xx,
    fetch: { method, path, headers: auth, body },
  });
  const b = (
    label: string,
    method: string,
    path: string,
    body?: string,
    spec5xx = false,
  ): Case => ({
    label: `borg ${label}`,
    kind: "nochange",
    spec5xx,
    fetch: { method, path, headers: { ...auth, accept: BORG }, body },
  });
  return [
    r("create ?create=TRUE", "POST", "/newrepo/?create=TRUE"),
    r("create ?create=1", "POST", "/newrepo/?create=1"),
    r("create ?create", "POST", "/newrepo/?create"),
    r("create false first", "POST", "/newrepo/?create=false&create=true"),
    r("create without slash", "POST", "/newrepo?create=true"),
    r("create depth 3", "POST", "/a/b/c/?create=true"),
    r("POST list", "POST", "/r/data/", "x"),
    r("DELETE repo", "DELETE", "/r/"),
    r("DELETE list", "DELETE", "/r/data/"),
    r("GET repo", "GET", "/r/"),
    r("v2 list with junk Accept", "GET", "/r/keys/"),
    r("object through a file (rest-server: 500)", "GET", "/notadir/config", undefined, true),
    r("POST through a file (rest-server: 500)", "POST", `/notadir/keys/${ABC}`, "abc", true),
    r("temp name", "GET", "/r/data/.x.y.stowage-tmp"),
    r("unknown type", "POST", `/r/unknown/${ABC}`, "abc"),
    r("metrics repo", "POST", "/metrics/keys/x", "x"),
    b("rmdir root", "DELETE", "/b/?cmd=rmdir"),
    b("rmdir non-empty (borgstore: 500)", "DELETE", "/b/packs?cmd=rmdir", undefined, true),
    b("rmdir traversal", "DELETE", "/b/..?cmd=rmdir"),
    b("delete a directory (borgstore: 500)", "DELETE", "/b/packs", undefined, true),
    b("load a directory (borgstore: 500)", "GET", "/b/packs", undefined, true),
    b("list a file (borgstore: 500)", "GET", "/b/file1/", undefined, true),
    b("hash a directory (borgstore: 500)", "POST", "/b/packs?cmd=hash", undefined, true),
    b("mkdir over a file (borgstore: 500)", "POST", "/b/file1?cmd=mkdir", undefined, true),
    b("hash algorithm nope", "POST", "/b/file1?cmd=hash&algorithm=nope"),
    b("hash algorithm shake_128", "POST", "/b/file1?cmd=hash&algorithm=shake_128"),
    b("hash algorithm 10 KB", "POST", `/b/file1?cmd=hash&algorithm=${"s".repeat(10_000)}`),
    b("hash without name", "POST", "/b/?cmd=hash"),
    b("move without new", "POST", "/b/?cmd=move&current=file1"),
    b("move empty current", "POST", "/b/?cmd=move&current=&new=x"),
    b("move blank", "POST", "/b/?cmd=move&current=file1&new=a+b"),
    b("move missing source", "POST", "/b/?cmd=move&current=nope&new=elsewhere"),
    b("create existing store", "POST", "/b/?cmd=create"),
    b("create store over a file (borgstore: 500)", "POST", "/notadir/?cmd=create", undefined, true),
    b("destroy a restic repository", "DELETE", "/r/?cmd=destroy"),
    b("destroy through a file", "DELETE", "/notadir/?cmd=destroy"),
    b("destroy with empty store name", "DELETE", "//?cmd=destroy"),
    b("store quota.hid", "POST", "/b/quota.hid", "1"),
    b("load quota.hid", "GET", "/b/quota.hid"),
    b("store x.tmp", "POST", "/b/x.tmp", "x"),
    b("store temp-marker name", "POST", "/b/.x.y.stowage-tmp", "x"),
    b("load temp-marker name", "GET", "/b/packs/00/.0000.abc.stowage-tmp"),
    b("store into the root", "POST", "/b/", "x"),
    b("store uppercase", "POST", "/b/Upper", "x"),
    b("store a..b", "POST", "/b/a..b", "x"),
    b("store x//y", "POST", "/b/x//y", "x"),
    { ...b("store x/./y (fetch resolves it to x/y)", "POST", "/b/x/./y", "x"), kind: "contained" },
    b("store below a file (borgstore: 500)", "POST", "/b/file1/sub", "x", true),
    b("store on a directory (borgstore: 500)", "POST", "/b/packs", "x", true),
    {
      label: "restic request to the borg store",
      kind: "nochange",
      fetch: { method: "POST", path: `/b/keys/${ABC}`, headers: auth, body: "abc" },
    },
  ];
}

async function runCase(
  server: Server,
  c: Case,
): Promise<{ status: number; sent: boolean }> {
  if (c.raw) {
    const result = await rawStatus(server.port, c.raw.bytes, {
      halfClose: c.raw.halfClose,
      head: c.raw.head,
      timeoutMs: 4000,
    });
    return { status: result.status, sent: true };
  }
  const f = c.fetch!;
  let body = f.body;
  if (typeof body === "string") body = copyBytes(enc.encode(body));
  try {
    const response = await fetch(server.url + f.path, {
      method: f.method,
      headers: f.headers,
      body,
      redirect: "manual",
    });
    await response.arrayBuffer().catch(() => {});
    return { status: response.status, sent: true };
  } catch (error) {
    // fetch refuses some values before sending (not counted); a reset after sending is status 0
    if (error instanceof TypeError && /header|method|invalid/i.test(error.message)) {
      return { status: 0, sent: false };
    }
    return { status: 0, sent: true };
  }
}

interface Tally {
  requests: number;
  fiveXX: number;
  fiveXXBySpec: number;
  noResponse: number;
  changedOutside: number;
  stateChanges: number;
  containedChanges: number;
  cliCases: number;
  cliFailures: number;
  details: string[];
}

async function fixture(base: string, withAuth: boolean): Promise<string> {
  const data = `${base}/data`;
  const sentinel = `${base}/sentinel`;
  for (const root of [data, sentinel]) {
    await Deno.mkdir(`${root}/r/data/c3`, { recursive: true });
    await Deno.mkdir(`${root}/r/data/84`, { recursive: true });
    await Deno.mkdir(`${root}/r/data/${BIG_ID.slice(0, 2)}`, { recursive: true });
    for (const type of ["index", "keys", "locks", "snapshots"]) {
      await Deno.mkdir(`${root}/r/${type}`, { recursive: true });
    }
    await Deno.writeTextFile(`${root}/r/config`, "restic config");
    await Deno.writeTextFile(`${root}/r/keys/${ABC}`, "abc");
    await Deno.writeTextFile(`${root}/r/data/c3/${FOO}`, "foobar");
    await Deno.writeTextFile(`${root}/r/data/84/${DIG}`, "0123456789");
    await Deno.writeFile(`${root}/r/data/${BIG_ID.slice(0, 2)}/${BIG_ID}`, BIG);
    await Deno.mkdir(`${root}/r2/keys`, { recursive: true });
    await Deno.mkdir(`${root}/b/config`, { recursive: true });
    await Deno.mkdir(`${root}/b/packs/00`, { recursive: true });
    await Deno.mkdir(`${root}/b/data/ab`, { recursive: true });
    await Deno.writeTextFile(`${root}/b/packs/00/0000`, "hello");
    await Deno.writeTextFile(`${root}/b/file1`, "0123456789");
    await Deno.writeTextFile(`${root}/b/file2`, "abcdefghij");
    await Deno.writeTextFile(`${root}/b/data/ab/abcd`, "abcd");
  }
  // the sentinel is also reachable as a sibling named like the data directory's entries
  await Deno.writeTextFile(`${sentinel}/config`, "sentinel config");
  await Deno.mkdir(`${sentinel}/keys`, { recursive: true });
  await Deno.writeTextFile(`${sentinel}/keys/${ABC}`, "abc");
  await Deno.mkdir(`${sentinel}/packs/00`, { recursive: true });
  await Deno.writeTextFile(`${sentinel}/packs/00/0000`, "sentinel pack");
  await Deno.writeTextFile(`${base}/parent-file`, "beside the data directory");
  await Deno.writeTextFile(`${data}/notadir`, "a file where a repository could be");
  if (withAuth) await Deno.writeTextFile(`${data}/.htpasswd`, htpasswdSha("alice", "pw") + "\n");
  return data;
}

async function runCorpus(
  ctx: PartContext,
  mode: "htpasswd" | "no-auth",
  tally: Tally,
): Promise<boolean> {
  const base = `${ctx.tmp}/${mode}`;
  const authOn = mode === "htpasswd";
  const data = await fixture(base, authOn);
  const args = ["--path", data];
  if (authOn) args.push("--max-size", String(10 ** 10), "--prometheus");
  else args.push("--no-auth");
  const server = await startServe(args);
  const authValue = authOn ? basic("alice", "pw") : null;
  const auth: Record<string, string> = authValue ? { authorization: authValue } : {};
  const rc: RawContext = { auth: authValue };
  const cases = [
    ...traversalCases(rc),
    ...longCases(rc),
    ...rangeCases(auth),
    ...hashCases(auth),
    ...lengthCases(rc),
    ...defragCases(auth),
    ...methodCases(rc),
    ...acceptCases(rc, auth),
    ...protocolCases(auth),
    ...garbageCases(rc),
    ...authCases(rc, authOn),
  ];
  let healthy = false;
  try {
    let inside = await snapshotTree(data);
    let outside = await snapshotTree(base, ["data"]);
    for (const c of cases) {
      const t0 = performance.now();
      const { status, sent } = await runCase(server, c);
      if (!sent) continue;
      tally.requests++;
      if (performance.now() - t0 > 500) {
        ctx.log(`badinput: slow ${c.label} → ${status}: ${(performance.now() - t0).toFixed(0)} ms`);
      }
      if (status === 0) {
        tally.noResponse++;
        tally.details.push(
          `${mode}: ${c.label}: no response (${(performance.now() - t0).toFixed(0)} ms)`,
        );
      }
      if (status >= 500) {
        // 501 (unknown method, borgstore) and 507 (quota) are protocol answers
        if (c.spec5xx || status === 501 || status === 507) tally.fiveXXBySpec++;
        else {
          tally.fiveXX++;
          tally.details.push(`${mode}: ${c.label} → ${status}`);
        }
      }
      let afterOutside = await snapshotTree(base, ["data"]);
      let afterInside = await snapshotTree(data);
      const suspicious = diffTrees(outside, afterOutside).length > 0 ||
        (c.kind === "nochange" && diffTrees(inside, afterInside).length > 0);
      if (suspicious) {
        await sleep(200); // let transient temp files of a rejected upload disappear
        afterOutside = await snapshotTree(base, ["data"]);
        afterInside = await snapshotTree(data);
      }
      const outsideDiff = diffTrees(outside, afterOutside);
      if (outsideDiff.length > 0) {
        tally.changedOutside++;
        tally.details.push(`${mode}: ${c.label} → ${status} changed outside: ${outsideDiff}`);
      }
      const insideDiff = diffTrees(inside, afterInside);
      if (insideDiff.length > 0) {
        if (c.kind === "nochange") {
          tally.stateChanges++;
          tally.details.push(`${mode}: ${c.label} → ${status} changed: ${insideDiff.slice(0, 4)}`);
        } else {
          tally.containedChanges++;
        }
      }
      inside = afterInside;
      outside = afterOutside;
    }
    // the server still serves: /health and a normal restic upload with read-back
    const health = await tryRequest(`${server.url}/health`);
    const body = copyBytes(enc.encode(`healthy after the corpus (${mode})`));
    const id = sha256Hex(body);
    const upload = await tryRequest(`${server.url}/r/data/${id}`, {
      method: "POST",
      headers: auth,
      body,
    });
    const back = await tryRequest(`${server.url}/r/data/${id}`, { headers: auth });
    healthy = health.status === 200 && upload.status === 200 && back.status === 200 &&
      sha256Hex(back.body) === id;
    if (!healthy) {
      tally.details.push(
        `${mode}: not healthy: health ${health.status}, upload ${upload.status}, read ${back.status}`,
      );
    }
  } finally {
    await server.stop();
  }
  return healthy;
}

/** `--permissions` is CLI-only: invalid values must exit 2 with one line, creating nothing. */
async function cliCases(ctx: PartContext, tally: Tally): Promise<void> {
  const values = [
    "{",
    "[]",
    '{"": 5}',
    '{"": "lrx"}',
    '"lr"',
    "42",
    '{"a": "l"',
    '{"": "lrwWD", "x": null}',
    "{" + '"a":'.repeat(10_000) + "}",
    "[".repeat(50_000),
    '{"": "l\\u0000"}',
    "borgbackup-everything",
    "",
  ];
  for (const value of values) {
    const backend = `${ctx.tmp}/cli-store`;
    const result = await runStowage([
      "borgstore-server-rest",
      "--backend",
      `file://${backend}`,
      "--port",
      "0",
      "--permissions",
      value,
    ]);
    tally.cliCases++;
    tally.requests++;
    let created = false;
    try {
      await Deno.lstat(backend);
      created = true;
    } catch {
      // not created: good
    }
    const trace = /^\s+at /m.test(result.stderr);
    if (result.code !== 2 || trace || created || result.stderr.trim().split("\n").length > 1) {
      tally.cliFailures++;
      tally.details.push(
        `cli --permissions ${JSON.stringify(value.slice(0, 30))}: exit ${result.code}, ` +
          `created ${created}: ${result.stderr.slice(0, 200)}`,
      );
    }
  }
}

export async function badInput(ctx: PartContext): Promise<Figure[]> {
  const tally: Tally = {
    requests: 0,
    fiveXX: 0,
    fiveXXBySpec: 0,
    noResponse: 0,
    changedOutside: 0,
    stateChanges: 0,
    containedChanges: 0,
    cliCases: 0,
    cliFailures: 0,
    details: [],
  };
  const healthyAuth = await runCorpus(ctx, "htpasswd", tally);
  const healthyOpen = await runCorpus(ctx, "no-auth", tally);
  await cliCases(ctx, tally);
  for (const line of tally.details.slice(0, 200)) ctx.log(`badinput: ${line}`);
  return [
    { name: "badinput.requests", value: tally.requests, rule: atLeast(300) },
    { name: "badinput.5xx", value: tally.fiveXX, rule: ZERO },
    { name: "badinput.5xx_prescribed_by_spec", value: tally.fiveXXBySpec, rule: INFO },
    { name: "badinput.no_response", value: tally.noResponse, rule: INFO },
    { name: "badinput.changed_outside", value: tally.changedOutside, rule: ZERO },
    { name: "badinput.state_changes", value: tally.stateChanges, rule: ZERO },
    { name: "badinput.contained_changes", value: tally.containedChanges, rule: INFO },
    { name: "badinput.cli_failures", value: tally.cliFailures, rule: ZERO },
    { name: "badinput.server_healthy", value: healthyAuth && healthyOpen ? 1 : 0, rule: ONE },
  ];
}
