// Startup cost: the modules every `stowage` process loads before its first answer. Deno's node
// compatibility layer costs about 30 ms to start, so no command's static import graph may hold a
// node: built-in or an npm package; TLS, hashing, bcrypt, BLAKE3 and S3 are loaded by the code
// that needs them. Loading modules is much of what is left (about 1 ms per 50 KB of source), so
// main.ts holds only the dispatcher, each command its own graph, and the serve path leaves
// BorgStore and the optional features to the code that uses them.

import { assert, assertEquals } from "./_assert.ts";

interface InfoDependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}

interface InfoModule {
  specifier: string;
  dependencies?: InfoDependency[];
}

/** The modules main.ts loads at startup (static, non-type imports), as `deno info` resolves them. */
async function staticGraph(root: URL): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", root.href],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(output.success, new TextDecoder().decode(output.stderr));
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const visit = (specifier: string) => {
    if (seen.has(specifier)) return;
    seen.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      if (dependency.isDynamic || dependency.code === undefined) continue;
      visit(dependency.code.specifier);
    }
  };
  visit(info.roots[0]);
  return [...seen];
}

const COMMANDS = [
  // module, a module its graph must hold (a check that the graph was read at all)
  ["../src/cli/serve_command.ts", "/src/transport/tcp_h1.ts"],
  ["../src/cli/borgstore_command.ts", "/src/transport/stdio_h1.ts"],
  ["../src/cli/stdio_commands.ts", "/src/stdio_servers.ts"],
] as const;

Deno.test("main.ts loads only the command dispatcher before it picks a subcommand", async () => {
  const graph = await staticGraph(new URL("../main.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/version.ts")), "graph looks incomplete");
  assertEquals(graph.filter((s) => !s.startsWith("file:")), []);
  // each command's code (servers, protocols, storage, transports) is its own module's import
  const commandCode = graph.filter((s) =>
    /\/src\/(protocol|storage|transport|http|policy)\/|\/src\/[a-z_]+_server\.ts$|\/src\/server\.ts$/
      .test(s)
  );
  assertEquals(commandCode, []);
});

Deno.test("no command loads a node: built-in or an npm package before its first answer", async () => {
  // node:http (systemd sockets) and node:tls (--tls) are imported inside their branches. fd.ts
  // used to be imported by every `serve` for listenFds alone, which cost every start about 28 ms.
  for (const [module, member] of COMMANDS) {
    const graph = await staticGraph(new URL(module, import.meta.url));
    assert(graph.some((s) => s.endsWith(member)), `${module}: graph looks incomplete`);
    assertEquals(graph.filter((s) => !s.startsWith("file:")), [], module);
  }
});

Deno.test("a restic server loads no BorgStore code and no optional feature before its first answer", async () => {
  // The borg router is imported on the first BorgStore request (handler.ts); metrics, the access
  // log and config-file quotas when they are configured (server.ts); S3 for --backend s3://.
  const graph = await staticGraph(new URL("../src/cli/serve_command.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/protocol/restic.ts")), "graph looks incomplete");
  const optional = graph.filter((s) =>
    /\/(borgstore[a-z_]*|borg_[a-z_]+|metrics|repo_stats|access_log|quota_scopes|s3[a-z_]*)\.ts$/
      .test(s) && !s.endsWith("/s3_config.ts")
  );
  assertEquals(optional, []);
});

Deno.test("a borg store over stdio loads no restic server code before its first answer", async () => {
  const graph = await staticGraph(new URL("../src/cli/borgstore_command.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/protocol/borgstore.ts")), "graph looks incomplete");
  const restic = graph.filter((s) =>
    /\/(restic|server|handler|tcp_h1|config_file|grants)\.ts$/.test(s)
  );
  assertEquals(restic, []);
});

Deno.test("the default TCP listener (Deno.listen + the HTTP/1.1 engine) loads no node: built-in", async () => {
  const graph = await staticGraph(new URL("../src/transport/listen.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/transport/tcp_h1.ts")), "graph looks incomplete");
  assertEquals(graph.filter((s) => !s.startsWith("file:")), []);
});

Deno.test("the modules a server runs before its first answer start no setInterval", async () => {
  // In Deno 2.9 the first setTimeout or setInterval loads the runtime's node timer implementation
  // (5–9 ms). Periodic work on the serve path (the TCP timeout sweep, the temp-file sweep, quota
  // saves, access log flushes) runs on tickers (src/ticker.ts) instead.
  const mainUrl = new URL("../main.ts", import.meta.url);
  const modules = new Set<string>();
  // the access log and config-file quotas are imported by buildServer when they are configured
  const roots = [
    "./main.ts",
    "./src/cli/serve_command.ts",
    "./src/http/access_log.ts",
    "./src/policy/quota_scopes.ts",
  ];
  for (const root of roots) {
    for (const specifier of await staticGraph(new URL(root, mainUrl))) modules.add(specifier);
  }
  assert(
    [...modules].some((s) => s.endsWith("/src/transport/tcp_h1.ts")) &&
      [...modules].some((s) => s.endsWith("/src/http/access_log.ts")),
    "graph looks incomplete",
  );
  const offenders: string[] = [];
  for (const specifier of modules) {
    if (!specifier.startsWith("file:")) continue;
    if (/\bsetInterval\(/.test(await Deno.readTextFile(new URL(specifier)))) {
      offenders.push(specifier.slice(mainUrl.href.length - "main.ts".length));
    }
  }
  assertEquals(offenders, []);
});

Deno.test("a TCP connection's byte reader and writer do not touch the web stream globals", async () => {
  // The first touch of ReadableStream or WritableStream in a process loads Deno's streams
  // implementation (about 3 ms); a connection of the TCP listener reads and writes Deno.Conn
  // directly and must not pay for it before its first answer. Both are told apart by shape.
  const { InputBuffer } = await import("../src/transport/h1_read.ts");
  const { byteSink } = await import("../src/transport/node_bridge.ts");
  const touched: string[] = [];
  const saved = ["ReadableStream", "WritableStream"].map((name) => {
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name)!;
    Object.defineProperty(globalThis, name, {
      configurable: true,
      get() {
        touched.push(name);
        return descriptor.value ?? descriptor.get?.call(globalThis);
      },
    });
    return [name, descriptor] as const;
  });
  try {
    new InputBuffer({ read: () => Promise.resolve(null) });
    byteSink({ write: (bytes) => Promise.resolve(bytes.length) });
  } finally {
    for (const [name, descriptor] of saved) Object.defineProperty(globalThis, name, descriptor);
  }
  // (the stream forms, used by the stdio transport, are covered by tests/stdio_h1_test.ts)
  assertEquals(touched, []);
});
