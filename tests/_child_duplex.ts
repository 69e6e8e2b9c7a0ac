// Test helper: a node:stream Duplex over a child process's stdin/stdout, for driving stdio
// servers with node:http2 (the way restic's rclone: backend talks to its child).

import { Duplex } from "node:stream";

/** The child's stdout as the readable side, its stdin as the writable side. */
export function childDuplex(child: Deno.ChildProcess): Duplex {
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  let closed = false;
  const closeWriter = () => {
    if (closed) return Promise.resolve();
    closed = true;
    return writer.close().catch(() => {});
  };
  return new Duplex({
    read() {
      reader.read().then(
        ({ value, done }) => this.push(done ? null : value),
        () => this.push(null),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writer.write(chunk).then(() => callback(), callback);
    },
    final(callback) {
      closeWriter().then(() => callback());
    },
    destroy(error, callback) {
      closeWriter().then(() => callback(error));
    },
  });
}
