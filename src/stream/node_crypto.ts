// node:crypto, loaded on first use. Loading it starts Deno's node compatibility layer, about 30 ms
// that a process would otherwise pay before its first answer; the stdio transports (one process
// per ssh connection) and requests that hash nothing need not wait for it.

export type NodeCrypto = typeof import("node:crypto");

let loading: Promise<NodeCrypto> | null = null;

/** node:crypto (loaded once, then the same module). */
export function nodeCrypto(): Promise<NodeCrypto> {
  loading ??= import("node:crypto");
  return loading;
}
