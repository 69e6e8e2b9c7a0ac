// Answers one node:http or node:http2 (compat API) request with the web handler: builds the web
// Request (streaming body with backpressure, the HTTP version for the access log), runs the
// handler with an abort signal in RequestInfo for a client that goes away, writes the Response
// back with backpressure, and throws away whatever of the request body the handler left unread
// so that the connection (or the HTTP/2 stream's flow-control window) stays usable. Shared by
// the plain TCP, TLS and socket activation listeners.

import type http from "node:http";
import type http2 from "node:http2";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import type { Handler, RequestInfo } from "../http/types.ts";
import { setRequestProtocol } from "../http/request_protocol.ts";
import {
  type BridgedBody,
  collectDeclaredBody,
  errorText,
  headersFromNode,
  headersFromRawPairs,
  makeRequest,
  nodeHeadersFromResponse,
  nodeReadableToWeb,
  parseContentLength,
  pipeWebBodyToNode,
  requestUrl,
} from "./node_bridge.ts";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface NodeRequestContext {
  scheme: "http" | "https";
  transport: RequestInfo["transport"];
  /** Host used in the request URL when the client sent none (or a malformed one). */
  fallbackHost: () => string;
  log: (line: string) => void;
}

/** A Host header value that is safe to put into a URL: name or [v6] address, optional port. */
export const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The peer IP as Deno.serve reports it (IPv4-mapped IPv6 addresses unwrapped). */
export function peerIp(socket: Socket | null | undefined): string {
  return unmapIpv4(socket?.remoteAddress ?? "");
}

/** An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as plain IPv4; others unchanged. */
export function unmapIpv4(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1] : address;
}

export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

function plainResponse(res: NodeResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(body.length),
  });
  res.end(body);
}

/** Whether a request carries a body (as Deno.serve decides: framing says so, not the method). */
function hasRequestBody(req: NodeRequest, method: string): boolean {
  if (method === "GET" || method === "HEAD") return false;
  if (req.httpVersionMajor === 2) {
    return !(req as http2.Http2ServerRequest).stream.endAfterHeaders;
  }
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined ||
    (length !== undefined && length !== "0");
}

/** Bodies with a declared length up to this are collected and sent with one `end()`. */
const SMALL_BODY = 64 * 1024;

/** The declared length of a small body, or null when it is larger or not declared. */
function smallBodyLength(contentLength: string | string[] | undefined): number | null {
  const declared = parseContentLength(typeof contentLength === "string" ? contentLength : null);
  return declared !== null && declared <= SMALL_BODY ? declared : null;
}

/** Serves one request; never rejects (failures are logged and end the response). */
export async function answerNodeRequest(
  handler: Handler,
  req: NodeRequest,
  res: NodeResponse,
  context: NodeRequestContext,
): Promise<void> {
  try {
    await answer(handler, req, res, context);
  } catch (error) {
    context.log(`ERROR: ${errorText(error)}`);
    res.destroy?.();
  }
}

async function answer(
  handler: Handler,
  req: NodeRequest,
  res: NodeResponse,
  context: NodeRequestContext,
): Promise<void> {
  const h2 = req.httpVersionMajor === 2;
  const method = req.method ?? "GET";
  res.on("error", () => {});
  let bridged: BridgedBody | null = null;
  const controller = new AbortController();
  // Closed before the response was ended: the client went away (HTTP/2 also emits "finish"
  // on a reset stream, so writableEnded is the reliable sign).
  res.once("close", () => {
    if (!res.writableEnded) controller.abort(new Error("client went away"));
  });

  let request: Request;
  try {
    const authority = h2 ? (req as http2.Http2ServerRequest).authority : req.headers.host;
    const host = typeof authority === "string" && HOST.test(authority)
      ? authority
      : context.fallbackHost();
    const url = requestUrl(`${context.scheme}://${host}`, req.url ?? "");
    if (url === null) throw new Error("bad request target");
    const headers = h2
      ? headersFromNode(req.headers)
      : headersFromRawPairs((req as http.IncomingMessage).rawHeaders);
    if (hasRequestBody(req, method)) bridged = nodeReadableToWeb(req);
    else req.resume();
    request = makeRequest(url, method, headers, bridged?.stream ?? null);
  } catch {
    bridged?.drain();
    plainResponse(res, 400, "Bad Request");
    return;
  }
  setRequestProtocol(request, h2 ? "HTTP/2.0" : `HTTP/${req.httpVersion}`);

  let response: Response;
  try {
    response = await handler(request, {
      remoteAddr: peerIp(req.socket as Socket) || "unix",
      transport: context.transport,
      signal: controller.signal,
    });
  } catch (error) {
    context.log(`ERROR: ${errorText(error)}`);
    response = new Response("Internal Server Error\n", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8", "content-length": "22" },
    });
  }
  const status = response.status;
  const noBody = method === "HEAD" || status === 204 || status === 304 || status < 200;
  const headers = nodeHeadersFromResponse(response.headers);
  if (
    !noBody && response.body === null && headers["content-length"] === undefined
  ) headers["content-length"] = "0";
  try {
    res.writeHead(status, headers);
  } catch (error) {
    context.log(`ERROR: cannot send response headers: ${errorText(error)}`);
    await response.body?.cancel().catch(() => {});
    bridged?.drain();
    res.destroy?.();
    return;
  }
  const smallLength = smallBodyLength(headers["content-length"]);
  if (noBody || response.body === null) {
    await response.body?.cancel().catch(() => {});
    res.end();
  } else if (smallLength !== null) {
    // A few KiB in hand: one end() call sends head and body together. Never more than the
    // declared length is collected; a longer body is a failure like a broken one.
    let bytes: Uint8Array | null;
    try {
      bytes = await collectDeclaredBody(response.body, smallLength);
      if (bytes === null) throw new Error("longer than its Content-Length");
    } catch (error) {
      context.log(`ERROR: response body failed: ${errorText(error)}`);
      res.destroy?.();
      bridged?.drain();
      return;
    }
    res.end(bytes);
  } else {
    try {
      await pipeWebBodyToNode(response.body, res as unknown as Writable);
    } catch (error) {
      context.log(`ERROR: response body failed: ${errorText(error)}`);
    }
  }
  // Whatever of the request body the handler did not read is discarded, so that the
  // connection (HTTP/1.1) or the stream's flow-control window (HTTP/2) is not held up.
  bridged?.drain();
}
