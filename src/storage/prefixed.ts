// A scoped view of a provider: every key is looked up below a fixed key prefix of the underlying
// provider, and key "" is the prefix itself. This is how one provider (memory, fs, s3…) serves
// many borg stores and restic repositories without a provider instance per directory. Keys are
// validated here, before they are joined, so a view can never reach outside its prefix.

import { StowageError } from "../errors.ts";
import { assertSafeKey, unsafeKeyReason } from "./keys.ts";
import type {
  BeginOptions,
  ByteRange,
  Entry,
  NameEntry,
  Provider,
  Stat,
  Upload,
} from "./provider.ts";

export class PrefixProvider implements Provider {
  readonly description: string;
  readonly #base: Provider;
  readonly #prefix: string;

  /**
   * @param base the provider that holds the data
   * @param prefix a validated key of `base` ("" gives an unscoped view)
   */
  constructor(base: Provider, prefix: string) {
    const reason = unsafeKeyReason(prefix);
    if (reason !== null) throw new StowageError("BadRequest", `invalid prefix: ${reason}`);
    this.#base = base;
    this.#prefix = prefix;
    this.description = prefix === "" ? base.description : `${base.description}, under ${prefix}/`;
  }

  /** The key prefix of this view inside the underlying provider. */
  get prefix(): string {
    return this.#prefix;
  }

  /** Maps a key of this view to a key of the underlying provider (validating it first). */
  #key(key: string): string {
    assertSafeKey(key);
    if (this.#prefix === "") return key;
    return key === "" ? this.#prefix : `${this.#prefix}/${key}`;
  }

  async stat(key: string): Promise<Stat | null> {
    return await this.#base.stat(this.#key(key));
  }

  async *list(dir: string): AsyncIterable<Entry> {
    yield* this.#base.list(this.#key(dir));
  }

  get listNames(): ((dir: string) => Promise<NameEntry[]>) | undefined {
    const base = this.#base;
    if (base.listNames === undefined) return undefined;
    return (dir) => base.listNames!(this.#key(dir));
  }

  async read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>> {
    return await this.#base.read(this.#key(key), range);
  }

  get readBytes():
    | ((key: string, range?: ByteRange, expected?: number) => Promise<Uint8Array<ArrayBuffer>>)
    | undefined {
    const base = this.#base;
    if (base.readBytes === undefined) return undefined;
    return (key, range, expected) => base.readBytes!(this.#key(key), range, expected);
  }

  async begin(key: string, options?: BeginOptions): Promise<Upload> {
    if (key === "") throw new StowageError("BadRequest", "empty name");
    return await this.#base.begin(this.#key(key), options);
  }

  async delete(key: string): Promise<number | null> {
    return await this.#base.delete(this.#key(key));
  }

  async move(from: string, to: string, options: { replace: boolean }): Promise<void> {
    return await this.#base.move(this.#key(from), this.#key(to), options);
  }

  async mkdir(dir: string): Promise<void> {
    return await this.#base.mkdir(this.#key(dir));
  }

  async rmdir(dir: string): Promise<void> {
    return await this.#base.rmdir(this.#key(dir));
  }

  async removeTree(dir: string): Promise<void> {
    return await this.#base.removeTree(this.#key(dir));
  }
}
