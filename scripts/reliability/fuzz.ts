// Part 3, fuzzing: a bounded, seeded, reproducible random-request fuzzer that calls stowage's
// handlers in process (built as src/server.ts and src/borgstore_server.ts build them, each over a
// temporary data directory with a sentinel sibling directory). Five configurations: serve
// --no-auth --max-size; serve with htpasswd --private-repos --append-only; serve with proxy auth
// --no-verify-upload; borgstore-server-rest --permissions no-delete --quota with a user; and
// borgstore-server-rest --quota with all permissions. Requests come from a grammar mixing valid
// and invalid methods, paths (repositories, types, IDs, store names, traversal and odd segments),
// queries (create, every borgstore cmd with random parameters), headers (Range, Accept,
// Content-Length, X-Content-hash-sha256, Authorization, X-User) and bodies (matching content,
// random bytes, slow streams, streams that fail, defrag JSON). They run in batches: one mutating
// request with up to three reads beside it (often a listing of the directory being written).
// Invariants, each violation printed with the seed and the request:
// - no thrown exception escapes a handler;
// - no 5xx, except 501 (borgstore: unknown method), 507 (quota) and the 500s the specs prescribe
//   for operations on a directory, through a file, or on a non-empty directory (recognised by
//   the borgstore message or the logged error: is a / not a directory, directory not empty);
// - every 200 upload (restic object or config, borg store) reads back byte-identical;
// - no listing shows a temp file, and none is left on disk at the end;
// - nothing appears, changes or disappears outside the data directories.
// The request sequence depends only on the seed: rerun with `--seed N --only fuzz`.

import { buildBorgstoreServer } from "../../src/borgstore_server.ts";
import { parseBorgstoreArgs } from "../../src/cli/borgstore_config.ts";
import { parseServeArgs } from "../../src/cli/serve_config.ts";
import type { Handler } from "../../src/http/types.ts";
import { memoryLogger } from "../../src/log.ts";
import { buildServer } from "../../src/server.ts";
import {
  basic,
  BORG,
  bySize,
  diffTrees,
  type Figure,
  htpasswdSha,
  INFO,
  measureDisk,
  type PartContext,
  RESTIC_V2,
  Rng,
  sha256Hex,
  snapshotTree,
  TEMP_MARKER,
  ZERO,
} from "./common.ts";

interface Config {
  name: string;
  kind: "serve" | "borgstore";
  handler: Handler;
  lines: string[];
  base: string;
  data: string;
  close(): Promise<void>;
  /** Restic repository prefixes ("" = root repository), valid ones first. */
  repos: string[];
  /** Borg store prefixes ("" in the borgstore-server-rest personality). */
  stores: string[];
  /** Authorization/identity header sets, valid ones first. */
  identities: Record<string, string>[];
}

interface FuzzRequest {
  index: number;
  config: Config;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  /** Deliver the body slowly in chunks, or fail it half-way. */
  bodyMode: "bytes" | "slow" | "fail";
  borg: boolean;
  mutating: boolean;
  /** The request is an upload whose 200 must read back identical (readback URL). */
  upload: string | null;
}

const RESTIC_TYPES = ["data", "keys", "locks", "snapshots", "index"];
const ODD_SEGMENTS = [
  "%2e%2e",
  "..%2f",
  "%2E%2E",
  "a%00b",
  "%c0%ae",
  "notadir",
  "metrics",
  ".stowage-tmp",
  "x".repeat(300),
  "%0d%0a",
  "%5c",
  "ä",
  "DATA",
  "",
];
const BORG_NAMESPACES = [
  "config",
  "keys",
  "locks",
  "archives",
  "packs",
  "index",
  "cache",
  "data",
  "x",
];
const ODD_NAMES = [
  "Upper",
  "a..b",
  "x.tmp",
  "quota.hid",
  "%2e%2e",
  "a//b",
  "z".repeat(101),
  ".x.y.stowage-tmp",
  "a\\b",
  "a%20b",
  "%c0%ae",
  "..",
];
const RANGES = [
  "bytes=0-0",
  "bytes=0-",
  "bytes=1-5",
  "bytes=-3",
  "bytes=-0",
  "bytes=5-2",
  "bytes=0--1",
  "bytes=99999999999-",
  "bytes=-99999999999",
  "bytes=0-1,3-4",
  "bytes=abc",
  "items=0-1",
  "bytes=",
  "bytes=10-20",
];
const ALGORITHMS = ["sha256", "md5", "blake3", "sha3_256", "nope", "SHA256", "shake_128", ""];

/** Bodies with known IDs: uploads of them pass verification. */
function contentPool(rng: Rng): Uint8Array[] {
  return Array.from({ length: 24 }, (_, i) => {
    const r = rng.next();
    const size = i === 0
      ? 0
      : r < 0.7
      ? rng.int(1, 2048)
      : r < 0.95
      ? rng.int(2048, 65536)
      : rng.int(65536, 300_000);
    return rng.bytes(size);
  });
}

class Generator {
  readonly #rng: Rng;
  readonly #pool: Uint8Array[];
  readonly #ids: string[];
  #index = 0;

  constructor(rng: Rng, readonly configs: Config[]) {
    this.#rng = rng;
    this.#pool = contentPool(rng);
    this.#ids = this.#pool.map((b) => sha256Hex(b));
  }

  #id(): string {
    const rng = this.#rng;
    const r = rng.next();
    if (r < 0.75) return rng.pick(this.#ids);
    if (r < 0.85) return sha256Hex(rng.bytes(8));
    return rng.pick([
      rng.pick(this.#ids).toUpperCase(),
      rng.pick(this.#ids).slice(1),
      rng.pick(this.#ids) + "0",
      ...ODD_SEGMENTS,
    ]);
  }

  #bodyFor(id: string | null): Uint8Array {
    const rng = this.#rng;
    const at = id === null ? -1 : this.#ids.indexOf(id.slice(-64));
    if (at >= 0 && rng.chance(0.8)) return this.#pool[at];
    if (rng.chance(0.5)) return rng.pick(this.#pool);
    return rng.bytes(rng.int(0, 3000));
  }

  #identity(config: Config): Record<string, string> {
    const rng = this.#rng;
    if (rng.chance(0.85)) return config.identities[0];
    return rng.pick([
      ...config.identities,
      {},
      { authorization: "Basic !!!" },
      { authorization: basic("alice", "wrong") },
      { authorization: `Basic ${"A".repeat(9000)}` },
      { "x-user": "" },
      { "x-user": "mallory" },
    ]);
  }

  #borgName(): string {
    const rng = this.#rng;
    if (rng.chance(0.12)) return rng.pick(ODD_NAMES);
    const ns = rng.pick(BORG_NAMESPACES);
    const r = rng.next();
    if (r < 0.5) {
      const id = rng.pick(this.#ids);
      return `${ns}/${id.slice(0, 2)}/${id}`;
    }
    if (r < 0.7) return `${ns}/${rng.pick(["manifest", "item", "l1", "00", "sub/deeper"])}`;
    if (r < 0.8) return ns;
    return `${ns}/${rng.pick(["a", "b", "c"])}${rng.chance(0.2) ? ".del" : ""}`;
  }

  next(): FuzzRequest {
    const rng = this.#rng;
    const config = rng.pick(this.configs);
    const borg = config.kind === "borgstore" || rng.chance(0.5);
    const headers: Record<string, string> = { ...this.#identity(config) };
    const m = rng.next();
    let method = m < 0.3 ? "GET" : m < 0.4 ? "HEAD" : m < 0.8 ? "POST" : m < 0.92 ? "DELETE" : "";
    if (method === "") method = rng.pick(["PUT", "PATCH", "OPTIONS", "PROPFIND", "FOO", "get"]);
    let path: string;
    let body: Uint8Array | null = null;
    let upload: string | null = null;
    if (borg) {
      headers.accept = rng.chance(0.93) ? BORG : rng.pick(["text/plain", `${BORG}, */*`, ""]);
      const store = rng.chance(0.92)
        ? rng.pick(config.stores)
        : rng.pick(["%2e%2e/", "r/", "notadir/", ""]);
      const name = this.#borgName();
      path = `/${store}${name}`;
      if (method === "GET" && rng.chance(0.3)) path = `/${store}${name.split("/")[0]}/`;
      if (method === "GET" && rng.chance(0.05)) path = `/${store}`;
      if (method === "GET" && rng.chance(0.3)) headers.range = rng.pick(RANGES);
      if (method === "POST") {
        const c = rng.next();
        if (c < 0.6) {
          body = this.#bodyFor(name);
          const h = rng.next();
          if (h < 0.7) headers["x-content-hash-sha256"] = sha256Hex(body);
          else if (h < 0.85) headers["x-content-hash-sha256"] = sha256Hex(rng.bytes(4));
          else if (h < 0.9) headers["x-content-hash-sha256"] = sha256Hex(body).toUpperCase();
          if (rng.chance(0.05)) path += "?cmd=bogus";
          upload = `/${store}${name}`.replace(/\/+$/, "");
        } else {
          const cmd = rng.pick([
            "move",
            "move",
            "mkdir",
            "hash",
            "quota",
            "defrag",
            "defrag",
            "create",
          ]);
          const params = new URLSearchParams({ cmd });
          if (cmd === "move") {
            if (rng.chance(0.95)) params.set("current", this.#borgName());
            if (rng.chance(0.95)) params.set("new", this.#borgName());
          } else if (cmd === "hash") {
            params.set("algorithm", rng.pick(ALGORITHMS));
          } else if (cmd === "defrag") {
            if (rng.chance(0.7)) params.set("target", this.#borgName());
            if (rng.chance(0.5)) params.set("algorithm", rng.pick(ALGORITHMS));
            if (rng.chance(0.3)) params.set("namespace", rng.pick(["packs", "data", "../x", ""]));
            if (rng.chance(0.3)) params.set("levels", rng.pick(["0", "1", "2", "-1", "x", "40"]));
            const sources = Array.from(
              { length: rng.int(0, 4) },
              () => [this.#borgName(), rng.int(-20, 50), rng.pick([0, 1, 5, 100, -1])],
            );
            body = new TextEncoder().encode(
              rng.chance(0.85)
                ? JSON.stringify(sources)
                : rng.pick(["{", "[[", "[null]", '"x"', ""]),
            );
          }
          path = (rng.chance(0.7) ? `/${store}` : `/${store}${name}`) + "?" + params.toString();
          if (cmd === "mkdir" || cmd === "hash") path = `/${store}${name}?${params}`;
        }
      } else if (method === "DELETE") {
        const c = rng.next();
        if (c < 0.08) path = `/${store}${name}?cmd=rmdir`;
        else if (c < 0.095) path = `/${store}?cmd=destroy`;
      } else if (!["GET", "HEAD"].includes(method)) {
        body = rng.chance(0.5) ? rng.bytes(rng.int(0, 100)) : null;
      }
    } else {
      if (rng.chance(0.3)) headers.accept = RESTIC_V2;
      const repo = rng.chance(0.9) ? rng.pick(config.repos) : `${rng.pick(ODD_SEGMENTS)}/`;
      const r = rng.next();
      let remainder: string;
      if (r < 0.05) remainder = rng.pick(["?create=true", "?create=true", "?create=1", ""]);
      else if (r < 0.2) remainder = "config";
      else if (r < 0.35) remainder = `${rng.pick(RESTIC_TYPES)}/`;
      else {
        const type = rng.chance(0.93) ? rng.pick(RESTIC_TYPES) : rng.pick(["DATA", "foo", "packs"]);
        remainder = `${type}/${this.#id()}`;
      }
      path = `/${repo}${remainder}`;
      if (method === "GET" && rng.chance(0.3)) headers.range = rng.pick(RANGES);
      if (method === "POST" && !remainder.startsWith("?")) {
        body = this.#bodyFor(remainder);
        if (/\/(data|keys|locks|snapshots|index)\/[0-9a-f]{64}$|\/config$/.test(path)) {
          upload = path;
        }
      } else if (!["GET", "HEAD", "POST", "DELETE"].includes(method)) {
        body = rng.chance(0.5) ? rng.bytes(rng.int(0, 100)) : null;
      }
    }
    let bodyMode: FuzzRequest["bodyMode"] = "bytes";
    if (body !== null) {
      const b = rng.next();
      if (b < 0.1) bodyMode = "slow";
      else if (b < 0.14) bodyMode = "fail";
      else if (b < 0.18) {
        headers["content-length"] = rng.pick([
          String(body.byteLength + rng.int(1, 10)),
          String(Math.max(0, body.byteLength - rng.int(1, 10))),
          "abc",
          "-1",
        ]);
      }
    }
    if (method === "GET" || method === "HEAD") body = null;
    return {
      index: this.#index++,
      config,
      method,
      url: `http://127.0.0.1${path}`,
      headers,
      body,
      bodyMode,
      borg,
      mutating: !(method === "GET" || method === "HEAD"),
      upload: body === null ? null : upload,
    };
  }

  /** A listing of the directory an upload writes to (makes its temp file likely to be seen). */
  listingBeside(upload: FuzzRequest): FuzzRequest {
    const url = new URL(upload.url);
    const dir = url.pathname.replace(/[^/]*$/, "");
    return {
      ...upload,
      index: upload.index,
      method: "GET",
      url: `http://127.0.0.1${dir}`,
      headers: { ...upload.headers, accept: upload.borg ? BORG : RESTIC_V2 },
      body: null,
      bodyMode: "bytes",
      mutating: false,
      upload: null,
    };
  }
}

function bodyStream(body: Uint8Array, mode: "slow" | "fail"): ReadableStream<Uint8Array> {
  let at = 0;
  const step = Math.max(1, Math.ceil(body.byteLength / 4));
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (mode === "fail" && at >= body.byteLength / 2) {
        controller.error(new Error("client went away"));
        return;
      }
      if (at >= body.byteLength) {
        controller.close();
        return;
      }
      controller.enqueue(body.slice(at, at + step));
      at += step;
    },
  });
}

function describe(seed: number, req: FuzzRequest): string {
  const body = req.body === null
    ? "no body"
    : `${req.body.byteLength} bytes (${req.bodyMode}) ${
      JSON.stringify(new TextDecoder().decode(req.body.subarray(0, 48)))
    }`;
  return `seed ${seed}, request #${req.index} on ${req.config.name}: ${req.method} ${
    req.url.slice("http://127.0.0.1".length)
  } headers ${JSON.stringify(req.headers).slice(0, 300)}; ${body}`;
}

/**
 * 500s the specs prescribe: borgstore operations on a directory, through a file or on a
 * non-empty directory; restic paths through a file, and POST config into a repository that was
 * never created (rest-server: 500, logged by stowage as "no /<repo>").
 */
const ALLOWED_500 =
  /is a directory|not a directory|directory not empty|NotADirectory|IsADirectory|ENOTDIR|EISDIR|ENOTEMPTY|^ERROR: no \//i;

/** A restic config upload whose body broke off: rest-server answers 500 (spec §4.2, §15 #47). */
function brokenConfigUpload(req: FuzzRequest): boolean {
  return !req.borg && req.method === "POST" && /\/config$/.test(new URL(req.url).pathname) &&
    (req.bodyMode === "fail" || "content-length" in req.headers);
}

function prescribed500(req: FuzzRequest, text: string, logged: string[]): boolean {
  if (req.borg) return ALLOWED_500.test(text);
  if (brokenConfigUpload(req)) return true;
  return logged.length > 0 && logged.every((line) => ALLOWED_500.test(line));
}

async function buildConfigs(tmp: string): Promise<Config[]> {
  const configs: Config[] = [];
  const prepare = async (name: string) => {
    const base = `${tmp}/${name}`;
    const data = `${base}/data`;
    await Deno.mkdir(`${data}`, { recursive: true });
    await Deno.mkdir(`${base}/sentinel/keys`, { recursive: true });
    await Deno.writeTextFile(`${base}/sentinel/config`, "sentinel");
    await Deno.writeTextFile(`${base}/sentinel/keys/x`, "sentinel key");
    await Deno.writeTextFile(`${base}/beside`, "beside the data directory");
    await Deno.writeTextFile(`${data}/notadir`, "a file");
    return { base, data };
  };
  const serve = async (
    name: string,
    flags: string[],
    extra: Pick<Config, "repos" | "stores" | "identities">,
    setup?: (data: string) => Promise<void>,
  ) => {
    const { base, data } = await prepare(name);
    await setup?.(data);
    const { config } = parseServeArgs(["--path", data, ...flags]);
    const log = memoryLogger();
    const built = await buildServer(config!, log);
    configs.push({
      name,
      kind: "serve",
      handler: built.handler,
      lines: log.lines,
      base,
      data,
      close: () => built.close(),
      ...extra,
    });
  };
  await serve("serve-open", ["--no-auth", "--max-size", "40000000"], {
    repos: ["r/", "", "r2/", "a/b/", "x/"],
    stores: ["s/", "t/", "r/"],
    identities: [{}],
  });
  await serve(
    "serve-private-append-only",
    ["--private-repos", "--append-only"],
    {
      repos: ["alice/", "alice/sub/", "bob/", "", "alicex/"],
      stores: ["alice/s/", "alice/t/", "bob/s/", "alice/"],
      identities: [{ authorization: basic("alice", "pw") }, { authorization: basic("bob", "pw2") }],
    },
    async (data) => {
      await Deno.writeTextFile(
        `${data}/.htpasswd`,
        `${htpasswdSha("alice", "pw")}\n${htpasswdSha("bob", "pw2")}\n`,
      );
      await Deno.mkdir(`${data}/alice/s`, { recursive: true }); // no-delete cannot create
    },
  );
  await serve("serve-proxy-noverify", ["--proxy-auth-username", "X-User", "--no-verify-upload"], {
    repos: ["alice/", "r/"],
    stores: ["alice/s/", "s/"],
    identities: [{ "x-user": "alice" }, { "x-user": "bob" }],
  });
  const borgstore = async (name: string, flags: string[], identities: Record<string, string>[]) => {
    const { base, data } = await prepare(name);
    await Deno.mkdir(`${data}/store`, { recursive: true });
    const { config } = parseBorgstoreArgs(["--backend", `file://${data}/store`, ...flags]);
    const log = memoryLogger();
    const built = buildBorgstoreServer(config!, log);
    configs.push({
      name,
      kind: "borgstore",
      handler: built.handler,
      lines: log.lines,
      base,
      data,
      close: () => built.close(),
      repos: [],
      stores: [""],
      identities,
    });
  };
  await borgstore(
    "borgstore-no-delete",
    ["--permissions", "no-delete", "--quota", "20000000", "--username", "u", "--password", "p"],
    [{ authorization: basic("u", "p") }],
  );
  await borgstore("borgstore-all", ["--quota", "20000000"], [{}]);
  return configs;
}

interface Outcome {
  status: number;
  body: Uint8Array;
  error: string | null;
}

async function call(req: FuzzRequest): Promise<Outcome> {
  let body: BodyInit | null = null;
  if (req.body !== null) {
    body = req.bodyMode === "bytes" ? new Uint8Array(req.body) : bodyStream(req.body, req.bodyMode);
  }
  let request: Request;
  try {
    request = new Request(req.url, { method: req.method, headers: req.headers, body });
  } catch (error) {
    return { status: -1, body: new Uint8Array(), error: `not constructible: ${error}` };
  }
  try {
    const response = await req.config.handler(request, {
      remoteAddr: "127.0.0.1",
      transport: "tcp",
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    return { status: response.status, body: bytes, error: null };
  } catch (error) {
    return {
      status: -2,
      body: new Uint8Array(),
      error: error instanceof Error ? error.stack ?? error.message : String(error),
    };
  }
}

function listedNames(outcome: Outcome): string[] {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(outcome.body));
    if (!Array.isArray(parsed)) return [];
    return parsed.map((e) => typeof e === "string" ? e : String(e?.name ?? ""));
  } catch {
    return [];
  }
}

export async function fuzz(ctx: PartContext): Promise<Figure[]> {
  const total = bySize(ctx.scale, { test: 2000, reduced: 6000, full: 60_000 });
  const configs = await buildConfigs(ctx.tmp);
  const generator = new Generator(new Rng(ctx.seed).fork(303), configs);
  const outside = new Map<Config, Map<string, string>>();
  for (const c of configs) outside.set(c, await snapshotTree(c.base, ["data"]));
  let requests = 0;
  let violations = 0;
  let allowed5xx = 0;
  let uploadsVerified = 0;
  const statuses = new Map<number, number>();
  const violation = (req: FuzzRequest, reason: string) => {
    violations++;
    if (violations <= 10) ctx.log(`fuzz: VIOLATION ${reason}\n  ${describe(ctx.seed, req)}`);
  };
  const checkOutside = async () => {
    for (const c of configs) {
      const now = await snapshotTree(c.base, ["data"]);
      const diff = diffTrees(outside.get(c)!, now);
      if (diff.length > 0) {
        violations++;
        ctx.log(`fuzz: VIOLATION (seed ${ctx.seed}) outside ${c.name}'s data directory: ${diff}`);
        outside.set(c, now);
      }
    }
  };
  try {
    let pending: FuzzRequest | null = null;
    while (requests < total) {
      // one mutating request and up to three reads run together
      const batch: FuzzRequest[] = [];
      let mutating: FuzzRequest | null = null;
      while (batch.length < 4 && requests + batch.length < total) {
        const req: FuzzRequest = pending ?? generator.next();
        pending = null;
        if (req.mutating) {
          if (mutating !== null) {
            pending = req;
            break;
          }
          mutating = req;
          if (req.upload !== null && batch.length < 3) batch.push(generator.listingBeside(req));
        }
        batch.push(req);
      }
      const before = new Map(configs.map((c) => [c, c.lines.length]));
      const outcomes = await Promise.all(batch.map((req) => call(req)));
      requests += batch.length;
      for (let i = 0; i < batch.length; i++) {
        const req = batch[i];
        const out = outcomes[i];
        statuses.set(out.status, (statuses.get(out.status) ?? 0) + 1);
        if (out.status === -2) {
          violation(req, `exception escaped the handler: ${out.error}`);
          continue;
        }
        if (out.status === -1) continue; // the fuzzer built an invalid Request: not sent
        if (out.status >= 500) {
          const text = new TextDecoder().decode(out.body);
          const logged = req.config.lines.slice(before.get(req.config)!).filter((l) =>
            l.startsWith("ERROR")
          );
          const prescribed = out.status === 501 || out.status === 507 ||
            (out.status === 500 && prescribed500(req, text, logged));
          if (prescribed) allowed5xx++;
          else {violation(
              req,
              `status ${out.status}: ${text.slice(0, 200)} ${logged.join(" | ").slice(0, 400)}`,
            );}
        }
        if (out.status === 200 && req.method === "GET") {
          for (const name of listedNames(out)) {
            if (name.includes(TEMP_MARKER) || name.endsWith(".tmp")) {
              violation(req, `listing shows a temp file: ${name}`);
            }
          }
        }
        if (out.status === 200 && req.upload !== null) {
          const back = await call({
            ...req,
            method: "GET",
            url: `http://127.0.0.1${req.upload}`,
            headers: Object.fromEntries(
              Object.entries(req.headers).filter(([k]) =>
                !["range", "content-length", "x-content-hash-sha256"].includes(k)
              ),
            ),
            body: null,
            bodyMode: "bytes",
          });
          const sent = req.body!;
          if (
            back.status !== 200 || back.body.byteLength !== sent.byteLength ||
            sha256Hex(back.body) !== sha256Hex(sent)
          ) {
            violation(
              req,
              `upload answered 200 but reads back ${back.status}, ${back.body.byteLength} bytes`,
            );
          } else {
            uploadsVerified++;
          }
        }
      }
      if (requests % 500 < batch.length) await checkOutside();
    }
    await checkOutside();
    for (const c of configs) {
      const disk = await measureDisk(c.data);
      if (disk.temps.length > 0) {
        violations++;
        ctx.log(`fuzz: VIOLATION (seed ${ctx.seed}) temp files left in ${c.name}: ${disk.temps}`);
      }
    }
  } finally {
    for (const c of configs) await c.close();
  }
  ctx.log(
    `fuzz: statuses ${
      [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(" ")
    }`,
  );
  return [
    { name: "fuzz.seed", value: ctx.seed, rule: INFO },
    { name: "fuzz.requests", value: requests, rule: INFO },
    { name: "fuzz.uploads_read_back", value: uploadsVerified, rule: INFO },
    { name: "fuzz.prescribed_5xx", value: allowed5xx, rule: INFO },
    { name: "fuzz.violations", value: violations, rule: ZERO },
  ];
}
