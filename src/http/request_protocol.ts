// The HTTP version a transport received a request with ("HTTP/1.0", "HTTP/1.1", "HTTP/2.0"),
// which a web Request does not carry. Transports state it; the access log reads it. Kept apart
// from the access log so a transport does not load the log's code when no --log is given.

const PROTOCOLS = new WeakMap<Request, string>();

/** Lets a transport state the HTTP version of a request ("HTTP/2.0"); default "HTTP/1.1". */
export function setRequestProtocol(request: Request, protocol: string): void {
  // the default needs no entry: one WeakMap insertion less for nearly every request
  if (protocol !== "HTTP/1.1") PROTOCOLS.set(request, protocol);
}

/** The HTTP version a transport stated for the request, "HTTP/1.1" when none did. */
export function requestProtocol(request: Request): string {
  return PROTOCOLS.get(request) ?? "HTTP/1.1";
}
