// The one request handler contract shared by every transport and protocol.

/** What a transport knows about the peer of a request. */
export interface RequestInfo {
  /** IP address, "unix" for unix sockets, "stdio-client" for stdio. */
  remoteAddr: string;
  transport: "tcp" | "tls" | "unix" | "stdio" | "fd";
}

/** Every transport turns its bytes into a Request and writes the Response back. */
export type Handler = (request: Request, info: RequestInfo) => Promise<Response>;
