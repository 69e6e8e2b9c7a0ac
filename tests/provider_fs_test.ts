// FsProvider: the shared provider contract plus file-system-only behaviour (modes, symlinks,
// fsync, temp-file hygiene, long names).

import { prepareAbsentCheck, surelyAbsent } from "../src/storage/absent_check.ts";
import { FsProvider } from "../src/storage/fs.ts";
import type { FsProviderOptions } from "../src/storage/fs.ts";
import type { Provider } from "../src/storage/provider.ts";
import { TEMP_MARKER } from "../src/storage/keys.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  chunkedStream,
  diskNames,
  entries,
  expectKind,
  get,
  getText,
  names,
  patterned,
  providerContract,
  put,
  sha256,
  text,
} from "./_provider_contract.ts";

interface FsFixture<P extends FsProvider = FsProvider> {
  base: string;
  root: string;
  provider: P;
  warnings: string[];
  cleanup(): Promise<void>;
}

async function fsFixture<P extends FsProvider = FsProvider>(
  options: FsProviderOptions = {},
  make: (root: string, options: FsProviderOptions) => P = (root, o) => new FsProvider(root, o) as P,
): Promise<FsFixture<P>> {
  const base = await Deno.makeTempDir({ prefix: "stowage-fs-test-" });
  const root = `${base}/root`;
  await Deno.mkdir(root);
  const warnings: string[] = [];
  const provider = make(root, { warn: (m) => warnings.push(m), ...options });
  return {
    base,
    root,
    provider,
    warnings,
    cleanup: () => Deno.remove(base, { recursive: true }),
  };
}

providerContract("fs", async () => {
  const f = await fsFixture();
  return { provider: f.provider, rootPath: f.root, cleanup: f.cleanup };
});

// A small coalescing buffer exercises the flush and direct-write paths with every chunk size.
providerContract("fs (4 KiB write buffer)", async () => {
  const f = await fsFixture({ writeBufferSize: 4096 });
  return { provider: f.provider, rootPath: f.root, cleanup: f.cleanup };
});

async function withFs(
  options: FsProviderOptions,
  fn: (f: FsFixture) => Promise<void>,
): Promise<void> {
  const f = await fsFixture(options);
  try {
    await fn(f);
  } finally {
    await f.cleanup();
  }
}

const umask = Deno.umask();

async function mode(path: string): Promise<number> {
  return (await Deno.lstat(path)).mode! & 0o777;
}

async function checkModes(provider: Provider, root: string, dirMode: number, fileMode: number) {
  const dir = dirMode & ~umask;
  const file = fileMode & ~umask;
  await put(provider, "a/b/c.txt", "c");
  await provider.mkdir("m/n");
  await put(provider, "src", "s");
  await provider.move("src", "p/q/moved", { replace: false });
  await put(provider, "x", "");
  for (const d of ["a", "a/b", "m", "m/n", "p", "p/q"]) {
    assertEquals((await mode(`${root}/${d}`)).toString(8), dir.toString(8), `dir ${d}`);
  }
  for (const f of ["a/b/c.txt", "p/q/moved", "x"]) {
    assertEquals((await mode(`${root}/${f}`)).toString(8), file.toString(8), `file ${f}`);
  }
}

Deno.test("fs: default modes are 0700 for directories and 0600 for files", async () => {
  await withFs({}, async ({ provider, root }) => {
    await checkModes(provider, root, 0o700, 0o600);
  });
});

Deno.test("fs: group access modes 0770/0660 when configured", async () => {
  await withFs({ dirMode: 0o770, fileMode: 0o660 }, async ({ provider, root }) => {
    await checkModes(provider, root, 0o770, 0o660);
  });
});

Deno.test("fs: a missing root is created on demand with the directory mode", async () => {
  await withFs({}, async ({ base }) => {
    const provider = new FsProvider(`${base}/fresh/root`, { warn: () => {} });
    assertEquals(await provider.stat(""), null);
    await expectKind(() => entries(provider, ""), "NotFound");
    await put(provider, "k", "v");
    assertEquals(await getText(provider, "k"), "v");
    assertEquals((await mode(`${base}/fresh/root`)).toString(8), (0o700 & ~umask).toString(8));
  });
});

/**
 * Layout: base/outside/{secret.txt, dir/inner.txt, dir/nested/deep.txt, empty/} outside the
 * root, and in the root: real.txt, realdir/f.txt plus symlinks out of and inside the root.
 */
async function symlinkLayout(base: string, root: string) {
  const outside = `${base}/outside`;
  await Deno.mkdir(`${outside}/dir/nested`, { recursive: true });
  await Deno.mkdir(`${outside}/empty`);
  await Deno.writeTextFile(`${outside}/secret.txt`, "secret");
  await Deno.writeTextFile(`${outside}/dir/inner.txt`, "inner");
  await Deno.writeTextFile(`${outside}/dir/nested/deep.txt`, "deep");
  await Deno.writeTextFile(`${root}/real.txt`, "real");
  await Deno.mkdir(`${root}/realdir`);
  await Deno.writeTextFile(`${root}/realdir/f.txt`, "f");
  await Deno.symlink(`${outside}/secret.txt`, `${root}/lfile`); // absolute, out
  await Deno.symlink("../outside/secret.txt", `${root}/rfile`); // relative, out
  await Deno.symlink(`${outside}/dir`, `${root}/ldir`); // directory, out
  await Deno.symlink(`${outside}/empty`, `${root}/lempty`); // empty directory, out
  await Deno.symlink("real.txt", `${root}/inlink`); // file, in
  await Deno.symlink("realdir", `${root}/indir`); // directory, in
  await Deno.symlink(`${root}/realdir/f.txt`, `${root}/realdir/abs-in`); // absolute, in
  await Deno.symlink("nowhere", `${root}/dangling`);
  return outside;
}

/** A recursive snapshot (path → content or "dir") of a directory. */
async function snapshot(path: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(path)) {
    const p = `${prefix}${e.name}`;
    if (e.isDirectory) {
      out[p] = "dir";
      Object.assign(out, await snapshot(`${path}/${e.name}`, `${p}/`));
    } else {
      out[p] = await Deno.readTextFile(`${path}/${e.name}`);
    }
  }
  return out;
}

Deno.test("fs: symlinks leaving the root are never followed", async () => {
  await withFs({}, async ({ provider, base, root }) => {
    const outside = await symlinkLayout(base, root);
    const before = await snapshot(outside);
    const blocked = ["Forbidden", "NotFound"] as const;

    // stat / read / list
    for (const key of ["lfile", "rfile", "ldir", "ldir/inner.txt", "ldir/nested/deep.txt"]) {
      const stat = await provider.stat(key).catch((e) => e);
      assert(
        stat === null || blocked.includes(stat?.kind),
        `stat ${key} must not follow: ${JSON.stringify(stat)}`,
      );
      await expectKind(() => get(provider, key), ...blocked);
    }
    await expectKind(() => entries(provider, "ldir"), ...blocked);
    await expectKind(() => entries(provider, "ldir/nested"), ...blocked);
    await expectKind(() => entries(provider, "lempty"), ...blocked);
    const listed = await names(provider, "");
    for (const link of ["lfile", "rfile", "ldir", "lempty", "dangling"]) {
      assert(!listed.includes(link), `${link} listed: ${listed}`);
    }

    // begin into a linked directory (missing directories below one: see the next tests)
    for (const key of ["ldir/new.txt", "ldir/nested/new.txt", "lempty/x"]) {
      await expectKind(async () => {
        const upload = await provider.begin(key);
        try {
          await chunkedStream(text("planted"), 4).pipeTo(upload.writable);
          await upload.commit({ replace: true });
        } finally {
          await upload.abort();
        }
      }, ...blocked);
    }
    assertEquals(await snapshot(outside), before, "begin changed the outside");

    // begin onto a link to an outside file: refused, or replaces the link itself
    for (const key of ["lfile", "rfile"]) {
      await put(provider, key, "overwrite", { replace: true }).catch((e) => {
        assert(blocked.includes(e?.kind), `begin ${key}: ${e}`);
      });
      await expectKind(() => put(provider, key, "x", { replace: false }), "Exists", ...blocked);
    }
    assertEquals(await snapshot(outside), before, "commit onto a link followed it");

    // delete
    for (const key of ["ldir/inner.txt", "ldir/nested/deep.txt"]) {
      const result = await provider.delete(key).catch((e) => e);
      assert(result === null || blocked.includes(result?.kind), `delete ${key}: ${result}`);
    }
    await Deno.symlink(`${outside}/secret.txt`, `${root}/dlink`);
    const delLink = await provider.delete("dlink").catch((e) => e);
    assert(delLink === 0 || delLink === null || blocked.includes(delLink?.kind), `${delLink}`);
    assertEquals(await snapshot(outside), before, "delete followed a link");

    // move out of, into, and below a linked directory
    await expectKind(
      () => provider.move("ldir/inner.txt", "stolen", { replace: true }),
      ...blocked,
    );
    await Deno.symlink(`${outside}/secret.txt`, `${root}/mlink`);
    await expectKind(() => provider.move("mlink", "stolen", { replace: true }), ...blocked);
    await expectKind(
      () => provider.move("real.txt", "ldir/planted", { replace: true }),
      ...blocked,
    );
    await expectKind(
      () => provider.move("real.txt", "ldir/nested/planted", { replace: false }),
      ...blocked,
    );
    assertEquals(await getText(provider, "real.txt"), "real");
    assertEquals(await provider.stat("stolen"), null);

    // directories
    await expectKind(() => provider.mkdir("ldir"), ...blocked, "Exists");
    await expectKind(() => provider.mkdir("ldir/nested"), ...blocked);
    await expectKind(() => provider.rmdir("lempty"), ...blocked, "NotDirectory");
    await expectKind(() => provider.rmdir("ldir/nested"), ...blocked);
    assertEquals(await snapshot(outside), before, "the outside directory changed");
  });
});

Deno.test("fs: removeTree never follows a symlinked directory out of the root", async () => {
  await withFs({}, async ({ provider, base, root }) => {
    const outside = await symlinkLayout(base, root);
    const before = await snapshot(outside);
    await provider.removeTree("ldir/nested").catch((e) => {
      assert(e?.kind === "Forbidden" || e?.kind === "NotFound", `removeTree: ${e}`);
    });
    assertEquals(await snapshot(outside), before);
    await provider.removeTree("ldir").catch(() => {}); // may remove the link, never the target
    assertEquals(await snapshot(outside), before);
  });
});

Deno.test("fs: mkdir/begin/move never create directories outside the root", async () => {
  await withFs({}, async ({ provider, base, root }) => {
    const outside = await symlinkLayout(base, root);
    const before = await snapshot(outside);
    await provider.mkdir("ldir/made/deeper").catch(() => {});
    assertEquals(await snapshot(outside), before, "mkdir");
    await provider.begin("ldir/sub/new.txt").then((u) => u.abort(), () => {});
    assertEquals(await snapshot(outside), before, "begin");
    await provider.move("real.txt", "ldir/sub2/planted", { replace: true }).catch(() => {});
    assertEquals(await snapshot(outside), before, "move");
  });
});

Deno.test("fs: symlinks inside the root are followed", async () => {
  await withFs({}, async ({ provider, base, root }) => {
    await symlinkLayout(base, root);
    assertEquals(await provider.stat("inlink"), await provider.stat("real.txt"));
    assertEquals(await getText(provider, "inlink"), "real");
    assertEquals((await provider.stat("indir"))?.isDirectory, true);
    assertEquals(await getText(provider, "indir/f.txt"), "f");
    assertEquals(await getText(provider, "realdir/abs-in"), "f");
    assertEquals(await names(provider, "indir"), ["abs-in", "f.txt"]);
    const listed = await entries(provider, "");
    assertEquals(listed.map((e) => e.name), ["indir", "inlink", "real.txt", "realdir"]);
    assertEquals(listed.find((e) => e.name === "inlink")?.size, 4);
    assertEquals(listed.find((e) => e.name === "indir")?.isDirectory, true);
    await put(provider, "indir/new.txt", "new");
    assertEquals(await Deno.readTextFile(`${root}/realdir/new.txt`), "new");
    assertEquals(await provider.stat("dangling"), null);
  });
});

Deno.test("fs: unsafe keys never reach outside the root", async () => {
  await withFs({}, async ({ provider, base }) => {
    await Deno.mkdir(`${base}/victim/sub`, { recursive: true });
    await Deno.writeTextFile(`${base}/victim/file`, "victim");
    const before = await snapshot(base);
    await expectKind(() => provider.removeTree("../victim"), "BadRequest");
    await expectKind(() => provider.delete("../victim/file"), "BadRequest");
    await expectKind(() => provider.rmdir("../victim/sub"), "BadRequest");
    await expectKind(() => provider.mkdir("../made"), "BadRequest");
    await expectKind(() => provider.begin("../planted"), "BadRequest");
    await expectKind(() => provider.move("../victim/file", "x", { replace: true }), "BadRequest");
    await expectKind(() => provider.read("../victim/file"), "BadRequest");
    await expectKind(() => provider.stat("/etc/passwd"), "BadRequest");
    assertEquals(await snapshot(base), before);
  });
});

Deno.test("fs: fsync of files and directories works (or warns once)", async () => {
  await withFs({}, async ({ provider, root, warnings }) => {
    await put(provider, "synced/x", patterned(10_000));
    await provider.move("synced/x", "other/y", { replace: false });
    await provider.syncDir(root);
    await provider.syncDir(`${root}/missing`);
    using file = await Deno.open(`${root}/other/y`, { read: true, write: true });
    await provider.syncFile(file);
    assert(warnings.length <= 1, `warned ${warnings.length} times`);
    assertEquals((await provider.stat("other/y"))?.size, 10_000);
  });
});

Deno.test("fs: a 0-byte upload commits an empty file", async () => {
  await withFs({}, async ({ provider, root }) => {
    const closed = await provider.begin("zero/closed");
    await closed.writable.close();
    await closed.commit({ replace: false });
    const untouched = await provider.begin("zero/untouched");
    await untouched.commit({ replace: false });
    for (const key of ["zero/closed", "zero/untouched"]) {
      assertEquals((await provider.stat(key))?.size, 0);
      assertEquals((await get(provider, key)).byteLength, 0);
      assertEquals((await Deno.stat(`${root}/${key}`)).size, 0);
    }
    assertEquals(await diskNames(`${root}/zero`), ["closed", "untouched"]);
  });
});

Deno.test("fs: a stream error mid-upload leaves no temp file", async () => {
  for (const writeBufferSize of [4096, 1024 * 1024]) {
    await withFs({ writeBufferSize }, async ({ provider, root }) => {
      await put(provider, "w/existing", "keep");
      // the body fails after 2.5 MB
      const upload = await provider.begin("w/x");
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= 2_500_000) {
            controller.error(new Error("client went away"));
            return;
          }
          controller.enqueue(patterned(100_000, sent));
          sent += 100_000;
        },
      });
      let failed = false;
      try {
        await body.pipeTo(upload.writable);
      } catch {
        failed = true;
      }
      assert(failed, "pipeTo must fail");
      // the writable's abort already removed the temp file
      const mid = await diskNames(`${root}/w`);
      assert(!mid.some((n) => n.includes(TEMP_MARKER)), "the temp file is gone");
      assertEquals(await names(provider, "w"), ["existing"]);
      await upload.abort();
      assertEquals(await diskNames(`${root}/w`), ["existing"]);
      assertEquals(await provider.stat("w/x"), null);

      // the writer aborts the writable mid-stream
      const second = await provider.begin("w/existing");
      const writer = second.writable.getWriter();
      await writer.write(patterned(3_000_000, 1));
      await writer.abort(new Error("aborted"));
      await second.abort();
      assertEquals(await diskNames(`${root}/w`), ["existing"]);
      assertEquals(await getText(provider, "w/existing"), "keep");
    });
  }
});

Deno.test("fs: a key with a 255-character segment can be uploaded", async () => {
  await withFs({}, async ({ provider, root }) => {
    const name = "n".repeat(255);
    const data = patterned(1000);
    await put(provider, `long/${name}`, data, { replace: false });
    assertEquals(sha256(await get(provider, `long/${name}`)), sha256(data));
    assertEquals(await diskNames(`${root}/long`), [name]);
  });
});

Deno.test("fs: an aborted upload removes the directories it created, not others", async () => {
  await withFs({}, async ({ provider, root }) => {
    await provider.mkdir("keep");
    const upload = await provider.begin("keep/new/deeper/x");
    await upload.abort();
    assertEquals(await diskNames(`${root}/keep`), []);
    const other = await provider.begin("keep/a/x");
    const sibling = await provider.begin("keep/a/y");
    await sibling.writable.getWriter().close();
    await sibling.commit({ replace: false });
    await other.abort();
    assertEquals(await diskNames(`${root}/keep/a`), ["y"]);
  });
});

Deno.test("fs: overlapping aborted uploads into a new directory leave no directory behind", async () => {
  await withFs({}, async ({ provider, root }) => {
    await provider.mkdir("keep");
    // the first upload creates keep/new, the second finds it; whichever aborts last removes it
    for (const creatorLeavesFirst of [true, false]) {
      const creator = await provider.begin("keep/new/a");
      const joiner = await provider.begin("keep/new/b");
      const [first, second] = creatorLeavesFirst ? [creator, joiner] : [joiner, creator];
      await first.abort();
      assertEquals(await diskNames(`${root}/keep`), ["new"]);
      await second.abort();
      assertEquals(await diskNames(`${root}/keep`), []);
    }
    // a committed object keeps the directory
    const creator = await provider.begin("keep/new/a");
    const joiner = await provider.begin("keep/new/b");
    await creator.writable.getWriter().close();
    await creator.commit({ replace: false });
    await joiner.abort();
    assertEquals(await diskNames(`${root}/keep/new`), ["a"]);
  });
});

Deno.test("fs: a directory that appears and vanishes during mkdir is created again", async () => {
  // What a recursive mkdir reports when another upload created the directory and that upload's
  // abort removed it before mkdir could check it: "already exists", with nothing there.
  await withFs({}, async ({ provider, root }) => {
    const mkdir = Deno.mkdir;
    let raced = 0;
    Deno.mkdir = (path, options) => {
      if (raced++ === 0) return Promise.reject(new Deno.errors.AlreadyExists(`mkdir '${path}'`));
      return mkdir(path, options);
    };
    try {
      await put(provider, "race/dir/obj", "x", { replace: false });
    } finally {
      Deno.mkdir = mkdir;
    }
    assert(raced >= 2, "mkdir ran again after the race");
    assertEquals(await diskNames(`${root}/race/dir`), ["obj"]);
  });
});

Deno.test("fs: uploads into a directory that an aborted upload is removing still begin", async () => {
  // An aborted upload removes the empty directories it created; another upload creating the
  // same directory at that moment must create it again, not fail with "not found".
  await withFs({}, async ({ provider, root }) => {
    const failures: string[] = [];
    for (let round = 0; round < 60; round++) {
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        try {
          const upload = await provider.begin(`r${round}/d/obj${i}`);
          if (i % 2 === 0) {
            await upload.abort();
            return;
          }
          const writer = upload.writable.getWriter();
          await writer.write(new Uint8Array([i]));
          await writer.close();
          await upload.commit({ replace: false });
        } catch (error) {
          failures.push(`round ${round} upload ${i}: ${(error as Error).message}`);
        }
      }));
      assertEquals(failures, []);
      assertEquals(await diskNames(`${root}/r${round}/d`), ["obj1", "obj3", "obj5", "obj7"]);
    }
  });
});

/** An FsProvider that counts its fsyncs, can fail the n-th one, and can refuse a second descriptor. */
class SyncCountingFs extends FsProvider {
  syncs = 0;
  failSync = 0;
  noSecondDescriptor = false;
  override openSyncHandle(tempPath: string): Promise<Deno.FsFile> {
    if (this.noSecondDescriptor) return Promise.reject(new Deno.errors.Busy("too many open files"));
    return super.openSyncHandle(tempPath);
  }
  override async syncFile(file: Deno.FsFile): Promise<void> {
    this.syncs++;
    if (this.syncs === this.failSync) throw new Deno.errors.Interrupted("I/O error (test)");
    await super.syncFile(file);
  }
}

async function withSyncCountingFs(fn: (fs: SyncCountingFs, root: string) => Promise<void>) {
  const f = await fsFixture(
    { writeBufferSize: 16 * 1024, earlySyncBytes: 64 * 1024 },
    (root, options) => new SyncCountingFs(root, options),
  );
  try {
    await fn(f.provider, f.root);
  } finally {
    await f.cleanup();
  }
}

// An early sync starts during the body (once 64 KiB are on disk) and the commit waits for it
// before the final sync, so the final sync is always the last call. Deno's resource sanitizer
// fails these tests if the early syncs' descriptor stays open.
Deno.test("fs: large uploads sync early while the rest arrives, and still sync at the end", async () => {
  await withSyncCountingFs(async (fs, root) => {
    const data = patterned(1024 * 1024 + 123, 7);
    await put(fs, "big/object", data, { replace: false, chunkSize: 10_000 });
    assert(fs.syncs >= 2, `an early sync and the final one ran (${fs.syncs})`);
    assertEquals(sha256(await get(fs, "big/object")), sha256(data));
    assertEquals(await diskNames(`${root}/big`), ["object"]);

    fs.syncs = 0;
    await put(fs, "big/small", patterned(60 * 1024, 8), { replace: false });
    assertEquals(fs.syncs, 1, "below the threshold only the final sync runs");
  });
});

Deno.test("fs: a failed early sync fails the commit and leaves nothing behind", async () => {
  await withSyncCountingFs(async (fs, root) => {
    await put(fs, "big/existing", "keep");
    fs.syncs = 0;
    fs.failSync = 1; // the first early sync
    const data = patterned(512 * 1024, 9);
    await expectKind(() => put(fs, "big/existing", data, { replace: true }), "Internal");
    assertEquals(await getText(fs, "big/existing"), "keep");
    assertEquals(await diskNames(`${root}/big`), ["existing"]);

    // a body that fails after early syncs started: the abort waits for them, then cleans up
    fs.failSync = 0;
    const upload = await fs.begin("big/cut");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 400 * 1024) return controller.error(new Error("client went away"));
        controller.enqueue(patterned(20 * 1024, sent));
        sent += 20 * 1024;
      },
    });
    let failed = false;
    await body.pipeTo(upload.writable).catch(() => failed = true);
    assert(failed, "pipeTo must fail");
    await upload.abort();
    assertEquals(await diskNames(`${root}/big`), ["existing"]);
  });
});

Deno.test("fs: without a second descriptor an upload does without early syncs and still commits", async () => {
  await withSyncCountingFs(async (fs) => {
    fs.noSecondDescriptor = true;
    const data = patterned(512 * 1024, 11);
    await put(fs, "big/alone", data, { replace: false });
    assertEquals(fs.syncs, 1, "only the final sync");
    assertEquals(sha256(await get(fs, "big/alone")), sha256(data));
  });
});

Deno.test("fs: stat answers absent names through the cheap check, symlink rules unchanged", async () => {
  await prepareAbsentCheck();
  await withFs({}, async ({ provider, base, root }) => {
    await symlinkLayout(base, root);
    assert(surelyAbsent(`${root}/missing`), "a missing name is surely absent");
    assert(surelyAbsent(`${root}/dangling`), "so is a dangling symlink");
    assert(!surelyAbsent(`${root}/real.txt`), "a file is not");
    assert(!surelyAbsent(`${root}/lfile`), "nor a symlink to an existing file");
    assertEquals(await provider.stat("missing"), null);
    assertEquals(await provider.stat("realdir/missing"), null);
    assertEquals(await provider.stat("dangling"), null);
    assertEquals((await provider.stat("real.txt"))?.size, 4);
    assertEquals((await provider.stat("inlink"))?.size, 4, "a symlink inside the root is followed");
    const out = await provider.stat("lfile").catch((e) => e);
    assert(out === null || out?.kind === "Forbidden", `lfile must not be followed: ${out}`);
  });
});

Deno.test("fs: stat answers the same after a run of found names as after a run of missing ones", async () => {
  await prepareAbsentCheck();
  await withFs({}, async ({ provider, base, root }) => {
    await symlinkLayout(base, root);
    const answers = async () => ({
      missing: await provider.stat("missing"),
      nested: await provider.stat("realdir/missing"),
      dangling: await provider.stat("dangling"),
      file: (await provider.stat("real.txt"))?.size,
      inside: (await provider.stat("inlink"))?.size,
      leaving: await provider.stat("lfile").then((s) => s?.size ?? null, (e) => e.kind),
    });
    // found names first (stat then skips the absent check), then missing ones (it uses it)
    for (let i = 0; i < 40; i++) await provider.stat("real.txt");
    const afterFound = await answers();
    for (let i = 0; i < 40; i++) await provider.stat("missing");
    const afterMissing = await answers();
    assertEquals(afterFound, afterMissing);
    assertEquals(afterFound.missing, null);
    assertEquals(afterFound.dangling, null);
    assertEquals(afterFound.file, 4);
    assertEquals(afterFound.inside, 4);
    assert(afterFound.leaving === null || afterFound.leaving === "Forbidden", "lfile not followed");
  });
});
