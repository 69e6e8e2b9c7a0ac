// Example: a custom storage provider served with the stowage library.
//
// AuditProvider wraps any Provider (here a MemoryProvider) and keeps a journal of every change a
// client made: committed uploads, deletes, moves and removed trees, with sizes and times. The
// journal is served as JSON at /audit next to the restic and borg endpoints, which shows how to
// compose the stowage handler with routes of your own.
//
//   deno run --allow-net examples/custom_provider.ts [--port 8000]
//   restic -r rest:http://127.0.0.1:8000/demo/ init
//   curl http://127.0.0.1:8000/audit
//
// A provider implements the small interface of mod.ts (`Provider`): keys are relative,
// slash-separated and already validated; an upload is invisible until `commit`, and a commit
// with `replace: false` must fail with a StowageError of kind "Exists" when the key is taken.

import {
  type BeginOptions,
  type ByteRange,
  createHandler,
  type Entry,
  MemoryProvider,
  type Provider,
  type Stat,
  type Upload,
} from "../mod.ts";

/** One change made through the provider. */
export interface AuditRecord {
  time: string;
  op: "write" | "delete" | "move" | "removeTree";
  key: string;
  /** Bytes written or removed (null when a delete found nothing). */
  bytes?: number | null;
  to?: string;
}

/** Delegates every call to `inner` and journals the changes (the newest `limit` records). */
export class AuditProvider implements Provider {
  readonly description: string;
  readonly journal: AuditRecord[] = [];

  constructor(private readonly inner: Provider, private readonly limit = 10_000) {
    this.description = `audited ${inner.description}`;
  }

  #record(record: Omit<AuditRecord, "time">): void {
    this.journal.push({ time: new Date().toISOString(), ...record });
    if (this.journal.length > this.limit) this.journal.shift();
  }

  stat(key: string): Promise<Stat | null> {
    return this.inner.stat(key);
  }

  list(dir: string): AsyncIterable<Entry> {
    return this.inner.list(dir);
  }

  read(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array>> {
    return this.inner.read(key, range);
  }

  async begin(key: string, options?: BeginOptions): Promise<Upload> {
    const upload = await this.inner.begin(key, options);
    return {
      writable: upload.writable,
      written: () => upload.written(),
      commit: async (opts) => {
        await upload.commit(opts);
        this.#record({ op: "write", key, bytes: upload.written() });
      },
      abort: () => upload.abort(),
    };
  }

  async delete(key: string): Promise<number | null> {
    const removed = await this.inner.delete(key);
    this.#record({ op: "delete", key, bytes: removed });
    return removed;
  }

  async move(from: string, to: string, options: { replace: boolean }): Promise<void> {
    await this.inner.move(from, to, options);
    this.#record({ op: "move", key: from, to });
  }

  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }

  rmdir(dir: string): Promise<void> {
    return this.inner.rmdir(dir);
  }

  async removeTree(dir: string): Promise<void> {
    await this.inner.removeTree(dir);
    this.#record({ op: "removeTree", key: dir });
  }
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--port");
  const port = at >= 0 ? Number(Deno.args[at + 1]) : 8000;
  const provider = new AuditProvider(new MemoryProvider());
  const stowage = createHandler({ provider });
  Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => console.log(`listening on http://127.0.0.1:${port}`),
  }, (request, info) => {
    if (new URL(request.url).pathname === "/audit" && request.method === "GET") {
      return Response.json(provider.journal);
    }
    return stowage(request, info);
  });
}
