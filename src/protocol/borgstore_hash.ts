// Hash algorithms for BorgStore `cmd=hash` and defrag target names (spec §2.7 hash).
// Owns: the mapping from Python/OpenSSL algorithm names (case-insensitive) to incremental
// hashers: node:crypto for the classic and SHA-3/BLAKE2 families, hash-wasm for BLAKE3.

import { nodeCrypto } from "../stream/node_crypto.ts";
import { StowageError } from "../errors.ts";

/** An incremental hash producing a lowercase hex digest. */
export interface Hasher {
  update(chunk: Uint8Array): void;
  hex(): string;
}

/** Python hashlib names (and OpenSSL spellings) → node:crypto names. */
const NODE_ALGORITHMS: Readonly<Record<string, string>> = {
  "md5": "md5",
  "sha1": "sha1",
  "sha224": "sha224",
  "sha256": "sha256",
  "sha384": "sha384",
  "sha512": "sha512",
  "sha512_224": "sha512-224",
  "sha512-224": "sha512-224",
  "sha512_256": "sha512-256",
  "sha512-256": "sha512-256",
  "sha3_224": "sha3-224",
  "sha3-224": "sha3-224",
  "sha3_256": "sha3-256",
  "sha3-256": "sha3-256",
  "sha3_384": "sha3-384",
  "sha3-384": "sha3-384",
  "sha3_512": "sha3-512",
  "sha3-512": "sha3-512",
  "blake2b": "blake2b512",
  "blake2b512": "blake2b512",
  "blake2s": "blake2s256",
  "blake2s256": "blake2s256",
  "ripemd160": "ripemd160",
  "sm3": "sm3",
  "md5-sha1": "md5-sha1",
};

function unsupported(algorithm: string): StowageError {
  return new StowageError("BadRequest", `Unsupported hash algorithm: ${algorithm}`);
}

/** Throws BadRequest `Unsupported hash algorithm: <alg>` unless the algorithm is known. */
export function checkAlgorithm(algorithm: string): void {
  const name = algorithm.toLowerCase();
  if (name !== "blake3" && !Object.hasOwn(NODE_ALGORITHMS, name)) throw unsupported(algorithm);
}

/** Creates a hasher; throws BadRequest for unknown names (including `shake_*`). */
export async function createHasher(algorithm: string): Promise<Hasher> {
  checkAlgorithm(algorithm);
  const name = algorithm.toLowerCase();
  if (name === "blake3") {
    // loaded on first use: a WebAssembly module that would slow down every start
    const { createBLAKE3 } = await import("hash-wasm");
    const blake3 = await createBLAKE3();
    blake3.init();
    return {
      update: (chunk) => void blake3.update(chunk),
      hex: () => blake3.digest("hex"),
    };
  }
  const hash = (await nodeCrypto()).createHash(NODE_ALGORITHMS[name]);
  return {
    update: (chunk) => void hash.update(chunk),
    hex: () => hash.digest("hex"),
  };
}

/** Hashes a whole stream. */
export async function hashReadable(
  stream: ReadableStream<Uint8Array>,
  algorithm: string,
): Promise<{ hex: string; bytes: number }> {
  const hasher = await createHasher(algorithm);
  let bytes = 0;
  for await (const chunk of stream) {
    hasher.update(chunk);
    bytes += chunk.byteLength;
  }
  return { hex: hasher.hex(), bytes };
}
