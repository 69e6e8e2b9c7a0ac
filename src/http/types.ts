// The one request handler contract shared by every transport and protocol.

/** What a transport knows about the peer of a request. */
export interface RequestInfo {
  /** IP address, "unix" for unix sockets, "stdio-client" for stdio. */
  remoteAddr: string;
  transport: "tcp" | "tls" | "unix" | "stdio" | "fd";
  /**
   * The transport writes bodies held beside a Response itself (held_body.ts). Otherwise the
   * dispatcher moves them into the Response before handing it over.
   */
  heldBodies?: boolean;
  /**
   * Aborted when the client goes away while the handler runs. stowage's own HTTP/1.1 and
   * node:http transports set it instead of giving the Request a signal: a Request built with one
   * follows it through a dependent signal, about 4 µs per request. Absent under Deno.serve,
   * whose Request has its own signal (touching it costs more still), and on stdio, where the
   * client going away ends the process.
   */
  signal?: AbortSignal;
}

/** Every transport turns its bytes into a Request and writes the Response back. */
export type Handler = (request: Request, info: RequestInfo) => Promise<Response>;
