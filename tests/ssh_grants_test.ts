// `stowage ssh --config FILE --user NAME`: the grants of the config file apply over ssh exactly as
// over HTTP. The forced command is run directly with SSH_ORIGINAL_COMMAND and HTTP/1.1 on stdin
// (what sshd would hand it), so no sshd is needed here (tests/ssh_test.ts covers the real one).

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { runStowage, sha256Hex } from "./_server.ts";

const ACCEPT = "Accept: application/vnd.x.borgstore.rest.v1\r\n";

function request(method: string, target: string, body = ""): string {
  const hash = body === "" ? "" : `X-Content-hash-sha256: ${sha256Hex(body)}\r\n`;
  const length = method === "POST" || method === "DELETE"
    ? `Content-Length: ${body.length}\r\n`
    : "";
  return `${method} ${target} HTTP/1.1\r\n${ACCEPT}${hash}${length}Connection: keep-alive\r\n\r\n${body}`;
}

function statuses(stdout: string): number[] {
  return [...stdout.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

Deno.test("ssh --config --user: grants decide per user and repository", async () => {
  const dir = await Deno.makeTempDir();
  const data = `${dir}/data`;
  await Deno.mkdir(data);
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      path: "data",
      grants: {
        alice: [{ pattern: "alice/*", mode: "all" }],
        bob: [{ pattern: "alice/shared", mode: "read-only" }],
      },
    }),
  );
  const ssh = (user: string, command: string, stdin: string) =>
    runStowage(["ssh", "--config", `${dir}/config.json`, "--user", user], {
      env: { SSH_ORIGINAL_COMMAND: command, HOME: dir },
      stdin,
    });
  try {
    const create = await ssh(
      "alice",
      `borgstore-server-rest --stdio --backend FILE:${data}/alice/shared`,
      request("POST", "/?cmd=create") + request("POST", "/config/readme", "hello"),
    );
    assertEquals(create.code, 0, create.stderr);
    assertEquals(statuses(create.stdout), [200, 200]);

    const reader = await ssh(
      "bob",
      `borg serve --rest --backend FILE:${data}/alice/shared`,
      request("GET", "/config/readme") + request("POST", "/config/other", "x") +
        request("DELETE", "/config/readme"),
    );
    assertEquals(reader.code, 0, reader.stderr);
    assertEquals(statuses(reader.stdout), [200, 403, 403]);
    assert(reader.stdout.includes("hello"));

    const stranger = await ssh(
      "bob",
      `borgstore-server-rest --stdio --backend FILE:${data}/alice/private`,
      request("POST", "/?cmd=create"),
    );
    assertEquals(stranger.code, 1);
    assertMatch(stranger.stderr, /refused: no grant for bob on alice\/private/);
    assertEquals(stranger.stdout, "");

    const outside = await ssh(
      "alice",
      `borgstore-server-rest --stdio --backend FILE:${dir}/elsewhere`,
      request("POST", "/?cmd=create"),
    );
    assertEquals(outside.code, 1);
    assertMatch(outside.stderr, /refused/);

    const mixed = await runStowage(["ssh", "--config", `${dir}/config.json`, "--root", data]);
    assertEquals(mixed.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
