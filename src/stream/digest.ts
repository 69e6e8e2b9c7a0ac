// Digesting and counting transforms for request bodies. Chunks pass through unchanged while an
// incremental node:crypto hash sees every byte.

import type { Hash } from "node:crypto";
import { nodeCrypto } from "./node_crypto.ts";

export interface DigestingStream {
  readonly stream: TransformStream<Uint8Array, Uint8Array>;
  /** Lowercase hex digest; valid after the stream has flushed. */
  hex(): string;
  /** Bytes seen so far. */
  bytes(): number;
}

/** Chunks (about 64 KiB each from the HTTP layer) a pipeline stage may hold. */
const PIPELINE_CHUNKS = 4;

/** A pass-through TransformStream that hashes (algorithm as node:crypto names it). */
export async function digestingStream(algorithm = "sha256"): Promise<DigestingStream> {
  const hash: Hash = (await nodeCrypto()).createHash(algorithm);
  let total = 0;
  let digest: string | null = null;
  const stream = new TransformStream<Uint8Array, Uint8Array>(
    {
      transform(chunk, controller) {
        hash.update(chunk);
        total += chunk.byteLength;
        controller.enqueue(chunk);
      },
      flush() {
        if (digest === null) digest = hash.digest("hex");
      },
    },
    // A few chunks of slack on each side let reading, hashing and writing overlap (bounded).
    { highWaterMark: PIPELINE_CHUNKS },
    { highWaterMark: PIPELINE_CHUNKS },
  );
  return {
    stream,
    hex() {
      if (digest === null) digest = hash.digest("hex");
      return digest;
    },
    bytes: () => total,
  };
}

/** The hex digest of bytes already in memory. */
export async function hashBytes(bytes: Uint8Array, algorithm = "sha256"): Promise<string> {
  return (await nodeCrypto()).createHash(algorithm).update(bytes).digest("hex");
}

/** Hashes a whole stream and returns the hex digest. */
export async function hashStream(
  stream: ReadableStream<Uint8Array>,
  algorithm = "sha256",
): Promise<{ hex: string; bytes: number }> {
  const hash = (await nodeCrypto()).createHash(algorithm);
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  return { hex: hash.digest("hex"), bytes };
}

/** Reads and discards a request body so keep-alive and stdio streams stay in sync. */
export async function drainBody(request: Request): Promise<void> {
  if (request.body === null || request.bodyUsed) return;
  try {
    for await (const _ of request.body) {
      // discard
    }
  } catch {
    // a broken body needs no draining
  }
}
