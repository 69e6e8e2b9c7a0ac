// restic listings with remembered sizes (src/protocol/restic_sizes.ts): the directory is always
// the truth for which objects exist, sizes come from uploads, earlier listings or the disk, and
// objects written, removed or replaced behind the server's back show up correctly. Without
// upload verification nothing is remembered. v1 listings are names only.

import { assertEquals } from "./_assert.ts";
import { randomBytes, sha256Hex, withStowage } from "./_server.ts";

const V2 = "application/vnd.x.restic.rest.v2";

async function list(url: string, type: string, v2 = true): Promise<unknown> {
  const response = await fetch(`${url}/r/${type}/`, { headers: v2 ? { accept: V2 } : {} });
  assertEquals(response.status, 200);
  return await response.json();
}

async function upload(url: string, type: string, body: Uint8Array<ArrayBuffer>): Promise<string> {
  const id = sha256Hex(body);
  const response = await fetch(`${url}/r/${type}/${id}`, { method: "POST", body });
  assertEquals(response.status, 200);
  await response.body?.cancel();
  return id;
}

function dataPath(dir: string, id: string): string {
  return `${dir}/r/data/${id.slice(0, 2)}/${id}`;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);

Deno.test("restic list: remembered sizes never hide what the disk says", () =>
  withStowage(["--no-auth"], async (server, dir) => {
    const created = await fetch(`${server.url}/r/?create=true`, { method: "POST" });
    assertEquals(created.status, 200);
    const bodies = [randomBytes(100), randomBytes(2000), randomBytes(30_000)];
    const ids: string[] = [];
    for (const body of bodies) ids.push(await upload(server.url, "data", body));
    const expected = ids.map((name, i) => ({ name, size: bodies[i].byteLength })).sort(byName);
    assertEquals(await list(server.url, "data"), expected);
    assertEquals(await list(server.url, "data"), expected, "second listing (from memory)");

    // written behind the server's back, next to remembered objects: listed with its real size
    const outside = randomBytes(777);
    const outsideId = sha256Hex(outside);
    await Deno.writeFile(dataPath(dir, outsideId), outside);
    const withOutside = [...expected, { name: outsideId, size: 777 }].sort(byName);
    assertEquals(await list(server.url, "data"), withOutside);

    // removed behind the server's back: gone from the listing
    await Deno.remove(dataPath(dir, ids[0]));
    const afterRemoval = withOutside.filter((e) => e.name !== ids[0]);
    assertEquals(await list(server.url, "data"), afterRemoval);

    // deleted through the server, then uploaded again: listed again, same size
    const deleted = await fetch(`${server.url}/r/data/${ids[1]}`, { method: "DELETE" });
    assertEquals(deleted.status, 200);
    assertEquals(
      await list(server.url, "data"),
      afterRemoval.filter((e) => e.name !== ids[1]),
    );
    await upload(server.url, "data", bodies[1]);
    assertEquals(await list(server.url, "data"), afterRemoval);

    // other types and v1 (names only)
    const key = await upload(server.url, "keys", randomBytes(321));
    assertEquals(await list(server.url, "keys"), [{ name: key, size: 321 }]);
    assertEquals(await list(server.url, "keys", false), [key]);
    assertEquals(await list(server.url, "data", false), afterRemoval.map((e) => e.name));
  }));

Deno.test("restic list: without upload verification, sizes always come from the disk", () =>
  withStowage(["--no-auth", "--no-verify-upload"], async (server, dir) => {
    const created = await fetch(`${server.url}/r/?create=true`, { method: "POST" });
    assertEquals(created.status, 200);
    const id = await upload(server.url, "data", randomBytes(500));
    assertEquals(await list(server.url, "data"), [{ name: id, size: 500 }]);
    // without verification a name says nothing about the content: a rewrite changes the size
    await Deno.writeFile(dataPath(dir, id), randomBytes(64));
    assertEquals(await list(server.url, "data"), [{ name: id, size: 64 }]);
  }));
