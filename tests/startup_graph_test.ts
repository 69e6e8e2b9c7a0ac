// Startup cost: the modules every `stowage` process loads before its first answer. Deno's node
// compatibility layer costs about 30 ms to start, so neither main.ts's static import graph nor the
// default TCP listener's may hold a node: built-in or an npm package; TLS, hashing, bcrypt,
// BLAKE3 and S3 are loaded by the code that needs them.

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

Deno.test("main.ts loads no node: built-in and no npm package before a subcommand needs one", async () => {
  const graph = await staticGraph(new URL("../main.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/transport/stdio_h1.ts")), "graph looks incomplete");
  const external = graph.filter((s) => !s.startsWith("file:"));
  assertEquals(external, []);
});

Deno.test("the default TCP listener (Deno.listen + the HTTP/1.1 engine) loads no node: built-in", async () => {
  const graph = await staticGraph(new URL("../src/transport/listen.ts", import.meta.url));
  assert(graph.some((s) => s.endsWith("/src/transport/tcp_h1.ts")), "graph looks incomplete");
  assertEquals(graph.filter((s) => !s.startsWith("file:")), []);
});

Deno.test("the modules every `serve` imports before it listens load no node: built-in", async () => {
  // serve() in main.ts imports these before it picks a listener; node:http (fd.ts) and node:tls
  // are imported inside the branches for systemd sockets and --tls. fd.ts used to be imported
  // here, for listenFds alone, which cost every start about 28 ms.
  const mainUrl = new URL("../main.ts", import.meta.url);
  const main = await Deno.readTextFile(mainUrl);
  const start = main.indexOf("async function serve(");
  const unconditional = main.slice(start, main.indexOf("const inherited", start));
  const imported = [...unconditional.matchAll(/await import\("([^"]+)"\)/g)].map((m) => m[1]);
  assert(imported.includes("./src/server.ts"), `serve() imports look different: ${imported}`);
  assert(
    imported.includes("./src/transport/listen.ts"),
    `serve() imports look different: ${imported}`,
  );
  for (const module of imported) {
    const graph = await staticGraph(new URL(module, mainUrl));
    assertEquals(graph.filter((s) => !s.startsWith("file:")), [], module);
  }
});

Deno.test("the modules a server runs before its first answer start no setInterval", async () => {
  // In Deno 2.9 the first setTimeout or setInterval loads the runtime's node timer implementation
  // (5–9 ms). Periodic work on the serve path (the TCP timeout sweep, the temp-file sweep, quota
  // saves, access log flushes) runs on tickers (src/ticker.ts) instead.
  const mainUrl = new URL("../main.ts", import.meta.url);
  const modules = new Set<string>();
  for (const root of ["./main.ts", "./src/server.ts", "./src/transport/listen.ts"]) {
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
