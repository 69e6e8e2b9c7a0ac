// HTTP/2 with prior knowledge over a pipe pair (stdin → client frames, stdout → server frames),
// the wire protocol of restic's `rclone:` backend (`<prog> serve restic --stdio … <path>`).
// Owns: the Duplex over stdin/stdout fed to node:http2 `createServer()` through
// `server.emit("connection", duplex)`, request/response conversion per stream, and the life
// cycle: the connection is never closed before stdin EOF; after EOF the streams in flight get a
// short grace period, then the duplex is destroyed and the promise resolves (the caller exits 0).
//
// Deno 2.9.6 quirk worked around here: a GOAWAY frame received from the client can abort the whole
// process inside nghttp2 (assertion in find_stream_on_goaway_func, denoland/deno#36788). Client
// GOAWAY frames are therefore removed from the inbound byte stream before nghttp2 sees them (a
// client sends GOAWAY only when it is about to close, which we see as EOF anyway), and this server
// never sends one itself: it ends by destroying the transport.

import http2 from "node:http2";
import { Duplex } from "node:stream";
import type { Handler, RequestInfo } from "../http/types.ts";
import {
  type BridgedBody,
  type ByteSink,
  byteSink,
  type ByteWriter,
  errorText,
  headersFromNode,
  makeRequest,
  nodeHeadersFromResponse,
  nodeReadableToWeb,
  pipeWebBodyToNode,
  requestUrl,
  stderrLog,
} from "./node_bridge.ts";

export interface StdioHttp2Options {
  /** Client → server bytes (default: stdin). */
  input?: ReadableStream<Uint8Array>;
  /** Server → client bytes (default: stdout, which must not be a terminal). */
  output?: WritableStream<Uint8Array> | ByteWriter;
  /** One line per message (default: stderr). */
  log?: (line: string) => void;
  /** How long streams in flight may still run after stdin EOF (default 3000 ms). */
  shutdownGraceMs?: number;
}

export const TTY_REFUSAL =
  "refusing to run HTTP2 server directly on a terminal, please let restic start it";

const INFO: RequestInfo = { remoteAddr: "stdio-client", transport: "stdio" };
const PREFACE_LENGTH = 24;
const FRAME_HEADER = 9;
const GOAWAY = 0x7;
const END_STREAM = 0x1;

/**
 * Splits the client's byte stream into HTTP/2 frames just far enough to drop GOAWAY frames; all
 * other bytes pass unchanged and without copying (except a frame header split across chunks).
 */
export class GoawayFilter {
  #prefaceLeft = PREFACE_LENGTH;
  #header = new Uint8Array(FRAME_HEADER);
  #headerUsed = 0;
  #payloadLeft = 0;
  #dropping = false;
  /** Number of GOAWAY frames removed so far. */
  dropped = 0;

  /** The parts of `chunk` to pass on, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let i = 0;
    let passFrom = 0;
    const flushPass = (end: number) => {
      if (end > passFrom) out.push(chunk.subarray(passFrom, end));
    };
    while (i < chunk.length) {
      if (this.#prefaceLeft > 0) {
        const n = Math.min(this.#prefaceLeft, chunk.length - i);
        this.#prefaceLeft -= n;
        i += n;
        continue;
      }
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - i);
        if (this.#dropping) {
          flushPass(i);
          passFrom = i + n;
        }
        this.#payloadLeft -= n;
        i += n;
        continue;
      }
      // collecting a frame header; its bytes are held back until the type is known
      if (this.#headerUsed === 0) flushPass(i);
      const n = Math.min(FRAME_HEADER - this.#headerUsed, chunk.length - i);
      this.#header.set(chunk.subarray(i, i + n), this.#headerUsed);
      this.#headerUsed += n;
      i += n;
      passFrom = i;
      if (this.#headerUsed < FRAME_HEADER) break;
      this.#headerUsed = 0;
      const h = this.#header;
      this.#payloadLeft = (h[0] << 16) | (h[1] << 8) | h[2];
      this.#dropping = h[3] === GOAWAY;
      if (this.#dropping) this.dropped++;
      else out.push(h.slice());
    }
    if (this.#headerUsed === 0) flushPass(chunk.length);
    return out;
  }
}

interface StdioDuplex {
  duplex: Duplex;
  /** Resolves at input EOF. */
  eof: Promise<void>;
  stopReading(): void;
}

/** A Duplex whose readable side is `input` (GOAWAY removed) and writable side is `sink`. */
function stdioDuplex(input: ReadableStream<Uint8Array>, sink: ByteSink): StdioDuplex {
  const reader = input.getReader();
  const filter = new GoawayFilter();
  let wanted = true;
  let wake: (() => void) | null = null;
  let stopped = false;
  let signalEof: () => void = () => {};
  const eof = new Promise<void>((resolve) => signalEof = resolve);

  const duplex = new Duplex({
    allowHalfOpen: true,
    read() {
      wanted = true;
      const w = wake;
      wake = null;
      w?.();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      sink.write(chunk).then(() => callback(), (error) => callback(error));
    },
    final(callback) {
      callback();
    },
    destroy(error, callback) {
      stopped = true;
      const w = wake;
      wake = null;
      w?.();
      callback(error);
    },
  });

  (async () => {
    try {
      while (!stopped) {
        if (!wanted) await new Promise<void>((resolve) => wake = resolve);
        if (stopped) break;
        const { value, done } = await reader.read();
        if (done) break;
        for (const part of filter.push(value)) wanted = duplex.push(part);
      }
    } catch {
      // input failed: same as EOF for us
    }
    signalEof();
    if (!duplex.destroyed) duplex.push(null);
  })();

  return {
    duplex,
    eof,
    stopReading() {
      stopped = true;
      reader.cancel().catch(() => {});
    },
  };
}

/**
 * Serves HTTP/2 (prior knowledge) on `input`/`output` (default stdin/stdout). Resolves after
 * input EOF once the streams in flight finished (or the grace period ran out), or when the
 * connection failed. Throws TTY_REFUSAL if the default stdout is a terminal.
 */
export function serveStdioHttp2(
  handler: Handler,
  options: StdioHttp2Options = {},
): Promise<void> {
  if (options.output === undefined && Deno.stdout.isTerminal()) {
    return Promise.reject(new Error(TTY_REFUSAL));
  }
  const log = options.log ?? stderrLog;
  const grace = options.shutdownGraceMs ?? 3000;
  const sink = byteSink(options.output ?? Deno.stdout);
  const io = stdioDuplex(options.input ?? Deno.stdin.readable, sink);

  return new Promise<void>((resolve) => {
    let inFlight = 0;
    let inputEnded = false;
    let finished = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;

    const finish = (why: string) => {
      if (finished) return;
      finished = true;
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      if (inFlight > 0) log(`stdio-h2: ${why}; abandoning ${inFlight} stream(s)`);
      io.stopReading();
      // destroying the transport first means nghttp2 never sends a GOAWAY (see header)
      if (!io.duplex.destroyed) io.duplex.destroy();
      sink.close().finally(() => resolve());
    };

    const server = http2.createServer({
      settings: { maxConcurrentStreams: 250, initialWindowSize: 1 << 20 },
      maxSessionMemory: 64,
    });
    server.on("session", (session: http2.ServerHttp2Session) => {
      session.on("error", (error: Error) => log(`stdio-h2: session error: ${errorText(error)}`));
      session.once("close", () => finish("connection closed"));
    });
    server.on("sessionError", (error: Error) => {
      log(`stdio-h2: session error: ${errorText(error)}`);
    });
    server.on(
      "stream",
      (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
        inFlight++;
        stream.on("error", (error: Error) => log(`stdio-h2: stream error: ${errorText(error)}`));
        stream.once("close", () => {
          inFlight--;
          if (inputEnded && inFlight === 0) finish("input ended");
        });
        serveStream(handler, stream, headers, flags, log).catch((error) => {
          log(`stdio-h2: ${errorText(error)}`);
          if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        });
      },
    );
    io.duplex.on("error", (error: Error) => {
      log(`stdio-h2: output failed: ${errorText(error)}`);
      finish("output failed");
    });

    io.eof.then(() => {
      inputEnded = true;
      if (finished) return;
      if (inFlight === 0) finish("input ended");
      else graceTimer = setTimeout(() => finish("input ended"), grace);
    });

    server.emit("connection", io.duplex);
  });
}

/** Converts one HTTP/2 stream into a web Request, runs the handler, writes the Response back. */
async function serveStream(
  handler: Handler,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  flags: number,
  log: (line: string) => void,
): Promise<void> {
  const method = String(headers[":method"] ?? "GET");
  const url = requestUrl("http://stdio", String(headers[":path"] ?? ""));
  const bodyless = method === "GET" || method === "HEAD" || (flags & END_STREAM) !== 0 ||
    stream.endAfterHeaders;
  let bridged: BridgedBody | null = null;
  let request: Request | null = null;
  if (url !== null) {
    try {
      const requestHeaders = headersFromNode(headers);
      const authority = headers[":authority"];
      if (!requestHeaders.has("host") && typeof authority === "string" && authority !== "") {
        requestHeaders.set("host", authority);
      }
      if (!bodyless) bridged = nodeReadableToWeb(stream);
      request = makeRequest(url, method, requestHeaders, bridged?.stream ?? null);
    } catch {
      request = null;
    }
  }

  let response: Response;
  if (request === null) {
    response = new Response("Bad Request", { status: 400 });
  } else {
    try {
      response = await handler(request, INFO);
    } catch (error) {
      log(`stdio-h2: handler failed: ${errorText(error)}`);
      response = new Response("Internal Server Error", { status: 500 });
    }
  }
  try {
    await writeResponse(stream, response, method === "HEAD");
  } finally {
    // throw away any request body the handler left unread (keeps flow control moving)
    if (bridged !== null) bridged.drain();
    else if (!stream.readableEnded && !stream.destroyed) stream.resume();
  }
}

async function writeResponse(
  stream: http2.ServerHttp2Stream,
  response: Response,
  isHead: boolean,
): Promise<void> {
  const body = response.body;
  if (stream.destroyed || stream.closed) {
    await body?.cancel().catch(() => {});
    return;
  }
  const noBody = isHead || body === null || response.status === 204 || response.status === 304;
  const outgoing: http2.OutgoingHttpHeaders = {
    ...nodeHeadersFromResponse(response.headers),
    ":status": response.status,
  };
  try {
    stream.respond(outgoing, { endStream: noBody });
  } catch (error) {
    // the client reset the stream while the handler ran
    await body?.cancel().catch(() => {});
    if (stream.destroyed || stream.closed) return;
    throw error;
  }
  if (noBody) {
    await body?.cancel().catch(() => {});
    return;
  }
  await pipeWebBodyToNode(body, stream);
}
