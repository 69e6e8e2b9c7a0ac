// HTTP/1.1 over a pipe pair (stdin → requests, stdout → responses), borgstore's `--stdio` mode.
// Owns the server loop over one stream: one request at a time, keep-alive always (`Connection:
// close` and HTTP/1.0 change nothing: the stream is the session), resolving at EOF on a request
// boundary. Parsing and body framing are h1_read's, response framing is h1_write's: a body
// without a Content-Length is measured first (in memory up to `maxBufferedResponse` bytes,
// default 16 MiB, beyond that in an unlinked temp file), so every answer carries its length and
// never uses chunked coding. Logs go to `log` (default stderr), never to the output.

import type { Handler, RequestInfo } from "../http/types.ts";
import { offerWholeBody } from "../http/held_body.ts";
import { InputBuffer, readRequestHead, RequestBody, type RequestHead } from "./h1_read.ts";
import {
  OutputBuffer,
  type ResponseFraming,
  writeContinue,
  writeRefusal,
  writeResponse,
} from "./h1_write.ts";
import {
  type ByteReader,
  byteSink,
  type ByteWriter,
  errorText,
  makeRequest,
  requestUrl,
  stderrLog,
} from "./node_bridge.ts";

export type { ByteReader, ByteWriter };
export { headerSpelling } from "./h1_write.ts";
export { MAX_HEADER_LINE, MAX_HEADERS, MAX_REQUEST_LINE } from "./h1_read.ts";

export interface StdioHttp1Options {
  /** Request bytes (default: stdin). */
  input?: ReadableStream<Uint8Array> | ByteReader;
  /** Response bytes (default: stdout). */
  output?: WritableStream<Uint8Array> | ByteWriter;
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
  /** Largest length-less response body held in memory before spooling to a temp file. */
  maxBufferedResponse?: number;
}

const DEFAULT_MAX_BUFFERED_RESPONSE = 16 * 1024 * 1024;
const INFO: RequestInfo = { remoteAddr: "stdio-client", transport: "stdio", heldBodies: true };

/**
 * Serves HTTP/1.1 requests from `input` (default stdin) one after the other, writing responses
 * to `output` (default stdout). Resolves at EOF on a request boundary, or after a request that
 * leaves the input unframeable (EOF inside a body, malformed framing), or when the output is gone.
 */
export async function serveStdioHttp1(
  handler: Handler,
  options: StdioHttp1Options = {},
): Promise<void> {
  const log = options.log ?? stderrLog;
  const framing: ResponseFraming = {
    extra: [],
    unsized: "measure",
    maxBuffered: options.maxBufferedResponse ?? DEFAULT_MAX_BUFFERED_RESPONSE,
    log: (line) => log(`stdio: ${line}`),
  };
  const input = new InputBuffer(options.input ?? Deno.stdin.readable);
  const sink = byteSink(options.output ?? Deno.stdout);
  const out = new OutputBuffer(sink);
  try {
    while (true) {
      const head = await readRequestHead(input);
      if (head.kind === "eof") {
        if (head.partial) log("stdio: input ended inside a request head");
        return;
      }
      if (head.kind === "fatal") {
        log(`stdio: ${head.refusal.message}; stopping`);
        await writeRefusal(out, head.refusal);
        return;
      }
      const body = new RequestBody(input, head.framing);
      if (!(await serveOne(handler, head, body, out, framing))) return;
      if (!(await body.discard())) {
        log("stdio: input ended or broke inside a request body; stopping");
        return;
      }
    }
  } catch (error) {
    // output failures (the client closed its end) land here
    log(`stdio: stopping: ${errorText(error)}`);
  } finally {
    input.release();
    await sink.close();
  }
}

/** Answers one parsed request. Returns false when the output is out of sync. */
async function serveOne(
  handler: Handler,
  head: Extract<RequestHead, { kind: "request" }>,
  body: RequestBody,
  out: OutputBuffer,
  framing: ResponseFraming,
): Promise<boolean> {
  let refusal = head.refusal;
  let request: Request | null = null;
  if (refusal === null) {
    const url = requestUrl("http://stdio", head.target);
    if (url === null) refusal = { status: 400, message: "unsupported request target" };
    else {
      try {
        const hasBody = body.present && head.method !== "GET" && head.method !== "HEAD";
        request = makeRequest(
          url,
          head.method,
          head.headers,
          hasBody ? body.stream() : null,
        );
        if (hasBody) offerWholeBody(request, (limit) => body.readWhole(limit));
      } catch {
        refusal = { status: 400, message: "invalid request" };
      }
    }
  }
  if (refusal !== null || request === null) {
    await writeRefusal(out, refusal ?? { status: 400, message: "invalid request" });
    return true;
  }

  const expect = request.headers.get("expect");
  if (expect !== null && expect.toLowerCase() === "100-continue" && body.present) {
    await writeContinue(out);
  }

  let response: Response;
  try {
    response = await handler(request, INFO);
  } catch (error) {
    framing.log(`handler failed: ${errorText(error)}`);
    response = new Response("Internal Server Error", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  return await writeResponse(out, response, head.method === "HEAD", framing);
}
