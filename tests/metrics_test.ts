// Prometheus metrics: the exposition text (rest-server's counter names, HELP texts and labels,
// stowage's gauges), label escaping, validation with the real `promtool check metrics`, gzip,
// and the access rules of /metrics (--prometheus-no-auth, --private-repos and the `metrics` user).

import { gunzipSync } from "node:zlib";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { peerMissing } from "./_peers.ts";
import {
  acceptsGzip,
  escapeLabelValue,
  METRICS_CONTENT_TYPE,
  metricsHandler,
  MetricsRegistry,
} from "../src/http/metrics.ts";

function sampleRegistry(): MetricsRegistry {
  const registry = new MetricsRegistry({
    repositoryUsage: () => [
      { repo: "bob", bytes: 10 },
      { repo: "alice", bytes: 1024 },
      { repo: "alice", bytes: 1 },
      { repo: "", bytes: 7 },
    ],
    lastSnapshot: () => [{ repo: "alice", seconds: 1_700_000_000.5 }],
    quota: { limit: 1_100_000, usage: () => 4096 },
  });
  registry.blob("write", { user: "bcuser", repo: "bcuser", type: "data" }, 100);
  registry.blob("write", { user: "bcuser", repo: "bcuser", type: "data" }, 50);
  registry.blob("read", { user: "bcuser", repo: "bcuser", type: "data" }, 100);
  registry.blob("read", { user: "", repo: "", type: "keys" }, 0);
  registry.blob("delete", { user: "bcuser", repo: "bcuser/sub", type: "locks" }, 12);
  return registry;
}

Deno.test("metrics: nothing is exported before first use (no pre-population)", () => {
  assertEquals(new MetricsRegistry({ processMetrics: false }).render(), "");
});

Deno.test("metrics: rest-server counters with names, HELP texts and sorted labels", () => {
  const registry = new MetricsRegistry({ processMetrics: false });
  registry.blob("write", { user: "bcuser", repo: "bcuser", type: "data" }, 100);
  registry.blob("write", { user: "bcuser", repo: "bcuser", type: "data" }, 1);
  registry.blob("read", { user: "bcuser", repo: "bcuser", type: "data" }, 100);
  registry.blob("delete", { user: "", repo: "", type: "locks" }, 5);
  assertEquals(
    registry.render(),
    [
      "# HELP rest_server_blob_delete_bytes_total Total number of bytes of blobs deleted",
      "# TYPE rest_server_blob_delete_bytes_total counter",
      'rest_server_blob_delete_bytes_total{repo="",type="locks",user=""} 5',
      "# HELP rest_server_blob_delete_total Total number of blobs deleted",
      "# TYPE rest_server_blob_delete_total counter",
      'rest_server_blob_delete_total{repo="",type="locks",user=""} 1',
      "# HELP rest_server_blob_read_bytes_total Total number of bytes read from blobs",
      "# TYPE rest_server_blob_read_bytes_total counter",
      'rest_server_blob_read_bytes_total{repo="bcuser",type="data",user="bcuser"} 100',
      "# HELP rest_server_blob_read_total Total number of blobs read",
      "# TYPE rest_server_blob_read_total counter",
      'rest_server_blob_read_total{repo="bcuser",type="data",user="bcuser"} 1',
      "# HELP rest_server_blob_write_bytes_total Total number of bytes written to blobs",
      "# TYPE rest_server_blob_write_bytes_total counter",
      'rest_server_blob_write_bytes_total{repo="bcuser",type="data",user="bcuser"} 101',
      "# HELP rest_server_blob_write_total Total number of blobs written",
      "# TYPE rest_server_blob_write_total counter",
      'rest_server_blob_write_total{repo="bcuser",type="data",user="bcuser"} 2',
      "",
    ].join("\n"),
  );
});

Deno.test("metrics: label values escape backslash, quote and newline", () => {
  assertEquals(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  assertEquals(escapeLabelValue("plain/sub"), "plain/sub");
  assertEquals(escapeLabelValue("\ud800x"), "\ufffdx");
  const registry = new MetricsRegistry({ processMetrics: false });
  registry.blob("read", { user: 'u"1', repo: "r\\2\n", type: "data" }, 3);
  assert(
    registry.render().includes(
      'rest_server_blob_read_total{repo="r\\\\2\\n",type="data",user="u\\"1"} 1\n',
    ),
  );
});

Deno.test("metrics: stowage gauges from callbacks, quota pair, process gauges", () => {
  const text = sampleRegistry().render();
  const lines = text.split("\n");
  const at = (prefix: string) => lines.filter((line) => line.startsWith(prefix));
  assertEquals(at("stowage_repository_usage_bytes"), [
    'stowage_repository_usage_bytes{repo=""} 7',
    'stowage_repository_usage_bytes{repo="alice"} 1025',
    'stowage_repository_usage_bytes{repo="bob"} 10',
  ]);
  assertEquals(at("stowage_repository_last_snapshot_timestamp_seconds"), [
    'stowage_repository_last_snapshot_timestamp_seconds{repo="alice"} 1700000000.5',
  ]);
  assertEquals(at("stowage_quota_limit_bytes"), ["stowage_quota_limit_bytes 1100000"]);
  assertEquals(at("stowage_quota_usage_bytes"), ["stowage_quota_usage_bytes 4096"]);
  assert(lines.includes("# TYPE stowage_quota_usage_bytes gauge"));
  assertMatch(text, /^stowage_process_resident_memory_bytes [1-9]\d*$/m);
  const start = Number(/^stowage_process_start_time_seconds (\S+)$/m.exec(text)?.[1]);
  assert(start > 1e9 && start <= Date.now() / 1000, `start time ${start}`);
  if (Deno.build.os === "linux") assertMatch(text, /^stowage_open_fds [1-9]\d*$/m);
  assert(text.endsWith("\n"));
});

Deno.test("metrics: a failing callback leaves its family out but the scrape works", () => {
  const registry = new MetricsRegistry({
    processMetrics: false,
    repositoryUsage: () => {
      throw new Error("disk on fire");
    },
    lastSnapshot: () => [{ repo: "a", seconds: 5 }],
  });
  const text = registry.render();
  assert(!text.includes("stowage_repository_usage_bytes"));
  assert(text.includes('stowage_repository_last_snapshot_timestamp_seconds{repo="a"} 5\n'));
});

Deno.test({
  name: "metrics: promtool check metrics accepts the exposition",
  ignore: peerMissing("promtool"),
  async fn() {
    const registry = sampleRegistry();
    registry.blob("write", { user: 'we"ird\\', repo: "new\nline", type: "snapshots" }, 9);
    const child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(registry.render()));
    await writer.close();
    const result = await child.output();
    const output = new TextDecoder().decode(result.stdout) +
      new TextDecoder().decode(result.stderr);
    assertEquals(result.code, 0, output);
    assertEquals(output.trim(), "");
  },
});

const allow = () => Promise.resolve("alice");

Deno.test("metrics handler: content type, any method, HEAD without body", async () => {
  const registry = sampleRegistry();
  const handler = metricsHandler(registry, {
    authenticate: allow,
    noAuth: false,
    privateRepos: false,
    authEnabled: true,
  });
  for (const method of ["GET", "POST", "DELETE", "PUT"]) {
    const response = await handler(new Request("http://h/metrics", { method }));
    assertEquals(response.status, 200, method);
    assertEquals(response.headers.get("content-type"), METRICS_CONTENT_TYPE);
    const body = await response.text();
    assert(body.includes("rest_server_blob_write_total"), method);
    assertEquals(
      Number(response.headers.get("content-length")),
      new TextEncoder().encode(body).length,
    );
  }
  const head = await handler(new Request("http://h/metrics", { method: "HEAD" }));
  assertEquals(head.status, 200);
  assertEquals(head.body, null);
  assert(Number(head.headers.get("content-length")) > 0);
});

Deno.test("metrics handler: gzip when Accept-Encoding allows it", async () => {
  const registry = new MetricsRegistry({ processMetrics: false });
  registry.blob("write", { user: "u", repo: "r", type: "data" }, 1);
  const handler = metricsHandler(registry, {
    authenticate: allow,
    noAuth: true,
    privateRepos: false,
    authEnabled: true,
  });
  const zipped = await handler(
    new Request("http://h/metrics", { headers: { "accept-encoding": "deflate, gzip;q=0.8" } }),
  );
  assertEquals(zipped.headers.get("content-encoding"), "gzip");
  const bytes = new Uint8Array(await zipped.arrayBuffer());
  assertEquals(Number(zipped.headers.get("content-length")), bytes.length);
  assertEquals(new TextDecoder().decode(gunzipSync(bytes)), registry.render());
  const plain = await handler(
    new Request("http://h/metrics", { headers: { "accept-encoding": "gzip;q=0, br" } }),
  );
  assertEquals(plain.headers.get("content-encoding"), null);
  assertEquals(await plain.text(), registry.render());
  assertEquals(acceptsGzip("*"), true);
  assertEquals(acceptsGzip("identity"), false);
  assertEquals(acceptsGzip("*, gzip;q=0"), false);
  assertEquals(acceptsGzip(null), false);
});

Deno.test("metrics handler: access rules as rest-server", async () => {
  // [case, noAuth (--prometheus-no-auth), privateRepos, authEnabled, authenticated user, status]
  const table: [string, boolean, boolean, boolean, string | null, number][] = [
    ["prometheus-no-auth ignores failed auth", true, false, true, null, 200],
    ["prometheus-no-auth ignores private repos", true, true, true, null, 200],
    ["prometheus-no-auth with --no-auth --private-repos", true, true, false, "", 200],
    ["authenticated user", false, false, true, "alice", 200],
    ["failed authentication", false, false, true, null, 401],
    ["--no-auth", false, false, false, "", 200],
    ["private repos: the metrics user", false, true, true, "metrics", 200],
    ["private repos: any other user", false, true, true, "alice", 401],
    ["private repos: user Metrics (case-sensitive)", false, true, true, "Metrics", 401],
    ["private repos: failed authentication", false, true, true, null, 401],
    ["--no-auth --private-repos: always 401", false, true, false, "", 401],
  ];
  for (const [name, noAuth, privateRepos, authEnabled, user, status] of table) {
    let asked = 0;
    const handler = metricsHandler(new MetricsRegistry({ processMetrics: false }), {
      authenticate: () => {
        asked++;
        return Promise.resolve(user);
      },
      noAuth,
      privateRepos,
      authEnabled,
    });
    for (const method of ["GET", "POST"]) {
      const response = await handler(new Request("http://h/metrics", { method }));
      assertEquals(response.status, status, `${name} (${method})`);
      const body = await response.text();
      if (status === 401) {
        assertEquals(body, "Unauthorized\n", name);
        assertEquals(response.headers.get("content-type"), "text/plain; charset=utf-8");
        assertEquals(response.headers.get("x-content-type-options"), "nosniff");
        assertEquals(response.headers.get("content-length"), "13");
      } else {
        assertEquals(response.headers.get("content-type"), METRICS_CONTENT_TYPE, name);
      }
    }
    if (noAuth || !authEnabled) assertEquals(asked, 0, `${name}: authenticate not called`);
  }
  const head = await metricsHandler(new MetricsRegistry(), {
    authenticate: () => Promise.resolve(null),
    noAuth: false,
    privateRepos: false,
    authEnabled: true,
  })(new Request("http://h/metrics", { method: "HEAD" }));
  assertEquals(head.status, 401);
  assertEquals(head.body, null);
});
