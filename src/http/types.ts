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
}

/** Every transport turns its bytes into a Request and writes the Response back. */
export type Handler = (request: Request, info: RequestInfo) => Promise<Response>;
