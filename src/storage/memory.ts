// In-memory provider with the same semantics as the filesystem provider: for ephemeral use and
// fast unit tests. Objects live in a map; directories are explicit entries; uploads are
// invisible until commit.

// deno-lint-ignore-file require-await
import { StowageError } from "../errors.ts";
import { assertSafeKey } from "./keys.ts";
import type { BeginOptions, ByteRange, Entry, Provider, Stat, Upload } from "./provider.ts";
import { baseName, compareNames, oneChunkStream, parentKey } from "./provider.ts";

interface MemoryObject {
  data: Uint8Array;
  mtimeMs: number;
  atimeMs: number;
}

export class MemoryProvider implements Provider {
  readonly description = "memory";
  readonly #objects = new Map<string, MemoryObject>();
  readonly #dirs = new Set<string>();
  #rootExists: boolean;

  constructor(options: { rootExists?: boolean } = {}) {
    this.#rootExists = options.rootExists ?? true;
  }

  #requireRoot(): void {
    if (!this.#rootExists) throw new StowageError("NotFound", "not found");
  }

  #isDir(key: string): boolean {
    return key === "" ? this.#rootExists : this.#dirs.has(key);
  }

  #checkParents(key: string): void {
    let dir = parentKey(key);
    while (dir !== "") {
      if (this.#objects.has(dir)) throw new StowageError("NotDirectory", "not a directory");
      dir = parentKey(dir);
    }
  }

  #mkdirs(dir: string): void {
    this.#checkParents(dir === "" ? "x" : `${dir}/x`);
    this.#rootExists = true;
    let current = dir;
    while (current !== "") {
      if (this.#objects.has(current)) throw new StowageError("NotDirectory", "not a directory");
      this.#dirs.add(current);
      current = parentKey(current);
    }
  }

  async stat(key: string): Promise<Stat | null> {
    assertSafeKey(key);
    if (this.#isDir(key)) {
      return Promise.resolve({ size: 4096, isDirectory: true, atimeMs: 0, mtimeMs: 0 });
    }
    const object = this.#objects.get(key);
    if (!object) return Promise.resolve(null);
    return Promise.resolve({
      size: object.data.byteLength,
      isDirectory: false,
      atimeMs: object.atimeMs,
      mtimeMs: object.mtimeMs,
    });
  }

  async *list(dir: string): AsyncIterable<Entry> {
    assertSafeKey(dir);
    this.#requireRoot();
    if (!this.#isDir(dir)) {
      if (this.#objects.has(dir)) throw new StowageError("NotDirectory", "not a directory");
      throw new StowageError("NotFound", "not found");
    }
    const prefix = dir === "" ? "" : `${dir}/`;
    const entries: Entry[] = [];
    for (const d of this.#dirs) {
      if (d.startsWith(prefix) && !d.slice(prefix.length).includes("/")) {
        entries.push({ name: baseName(d), size: 4096, isDirectory: true, atimeMs: 0, mtimeMs: 0 });
      }
    }
    for (const [key, object] of this.#objects) {
      if (key.startsWith(prefix) && !key.slice(prefix.length).includes("/")) {
        entries.push({
          name: baseName(key),
          size: object.data.byteLength,
          isDirectory: false,
          atimeMs: object.atimeMs,
          mtimeMs: object.mtimeMs,
        });
      }
    }
    entries.sort((a, b) => compareNames(a.name, b.name));
    yield* entries;
  }

  async readBytes(key: string, range?: ByteRange): Promise<Uint8Array<ArrayBuffer>> {
    assertSafeKey(key);
    if (this.#isDir(key)) throw new StowageError("IsDirectory", "is a directory");
    const object = this.#objects.get(key);
    if (!object) throw new StowageError("NotFound", "not found");
    object.atimeMs = Date.now();
    const start = Math.min(range?.offset ?? 0, object.data.byteLength);
    const end = range
      ? Math.min(start + range.length, object.data.byteLength)
      : object.data.byteLength;
    return object.data.slice(start, end);
  }

  async read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>> {
    return oneChunkStream(await this.readBytes(key, range));
  }

  async begin(key: string, options: BeginOptions = {}): Promise<Upload> {
    assertSafeKey(key);
    if (key === "") throw new StowageError("BadRequest", "empty name");
    const dir = parentKey(key);
    if (!this.#isDir(dir)) {
      if (options.createParents === false) throw new StowageError("NotFound", "not found");
      this.#mkdirs(dir);
    }
    const chunks: Uint8Array[] = [];
    let written = 0;
    let done = false;
    const upload: Upload = {
      writable: new WritableStream<Uint8Array>({
        write(chunk) {
          chunks.push(chunk.slice());
          written += chunk.byteLength;
        },
      }),
      written: () => written,
      commit: async (opts) => {
        if (done) throw new StowageError("Internal", "upload already finished");
        done = true;
        if (this.#isDir(key)) throw new StowageError("IsDirectory", "is a directory");
        this.#mkdirs(dir);
        if (!opts.replace && this.#objects.has(key)) {
          throw new StowageError("Exists", "already exists");
        }
        const data = new Uint8Array(written);
        let at = 0;
        for (const c of chunks) {
          data.set(c, at);
          at += c.byteLength;
        }
        const now = Date.now();
        this.#objects.set(key, { data, mtimeMs: now, atimeMs: now });
        return Promise.resolve();
      },
      abort: async () => {
        done = true;
        chunks.length = 0;
        return Promise.resolve();
      },
    };
    return Promise.resolve(upload);
  }

  async delete(key: string): Promise<number | null> {
    assertSafeKey(key);
    if (this.#isDir(key)) throw new StowageError("IsDirectory", "is a directory");
    const object = this.#objects.get(key);
    if (!object) return Promise.resolve(null);
    this.#objects.delete(key);
    return Promise.resolve(object.data.byteLength);
  }

  async move(from: string, to: string, options: { replace: boolean }): Promise<void> {
    assertSafeKey(from);
    assertSafeKey(to);
    this.#mkdirs(parentKey(to));
    const object = this.#objects.get(from);
    if (!object) throw new StowageError("NotFound", "not found");
    if (from === to) return Promise.resolve();
    if (this.#isDir(to)) throw new StowageError("IsDirectory", "is a directory");
    if (!options.replace && this.#objects.has(to)) {
      throw new StowageError("Exists", "already exists");
    }
    this.#objects.delete(from);
    this.#objects.set(to, object);
    return Promise.resolve();
  }

  async mkdir(dir: string): Promise<void> {
    assertSafeKey(dir);
    if (this.#objects.has(dir)) throw new StowageError("NotDirectory", "not a directory");
    this.#mkdirs(dir);
    return Promise.resolve();
  }

  async rmdir(dir: string): Promise<void> {
    assertSafeKey(dir);
    if (this.#objects.has(dir)) throw new StowageError("NotDirectory", "not a directory");
    if (!this.#isDir(dir)) throw new StowageError("NotFound", "not found");
    const prefix = dir === "" ? "" : `${dir}/`;
    for (const key of [...this.#objects.keys(), ...this.#dirs]) {
      if (key.startsWith(prefix) && key !== dir) {
        throw new StowageError("NotEmpty", "directory not empty");
      }
    }
    if (dir === "") this.#rootExists = false;
    else this.#dirs.delete(dir);
    return Promise.resolve();
  }

  async removeTree(dir: string): Promise<void> {
    assertSafeKey(dir);
    const prefix = dir === "" ? "" : `${dir}/`;
    for (const key of [...this.#objects.keys()]) {
      if (key.startsWith(prefix)) this.#objects.delete(key);
    }
    for (const d of [...this.#dirs]) {
      if (d === dir || d.startsWith(prefix)) this.#dirs.delete(d);
    }
    if (dir === "") this.#rootExists = false;
    return Promise.resolve();
  }
}
