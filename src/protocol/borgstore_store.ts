// BorgStore `store` (spec §2.7 store): a streamed upload that becomes visible only when the body
// arrived completely, matched `X-Content-hash-sha256` (case-sensitive) and fit the quota.
// Order: Content-Length (400) → store (410) → name (400) → permission (403) → quota reserve
// from Content-Length (507) → stream body → sha256 → provider upload (quota enforced while
// streaming) → hash check (422) → commit (borgstore_write.ts).

import { StowageError } from "../errors.ts";
import { WHOLE_BODY_LIMIT } from "../http/held_body.ts";
import { writeBytes } from "../storage/provider.ts";
import { digestingStream, hashBytes } from "../stream/digest.ts";
import { openBody, parseContentLength } from "./borgstore_body.ts";
import { type BorgStore, onItem, requireStore } from "./borgstore_context.ts";
import { hashReadable } from "./borgstore_hash.ts";
import { validateName } from "./borgstore_names.ts";
import { okResponse } from "./borgstore_status.ts";
import {
  beginWrite,
  commitWrite,
  overwriteForbidden,
  sameContent,
  writeMode,
} from "./borgstore_write.ts";

export const CONTENT_HASH_HEADER = "x-content-hash-sha256";

function hashMismatch(): StowageError {
  return new StowageError("HashMismatch", "Content hash verification failed, please retry");
}

export async function storeItem(
  request: Request,
  store: BorgStore,
  name: string,
): Promise<Response> {
  const expected = parseContentLength(request);
  await requireStore(store);
  validateName(name);
  const existing = await onItem(name, () => store.provider.stat(name));
  const mode = writeMode(store, name, existing);
  const announced = request.headers.get(CONTENT_HASH_HEADER) || null;
  const body = openBody(request, expected);

  if (mode === "compare") {
    // Only `w`: a retried store of identical bytes succeeds without writing.
    if (expected !== null && expected !== existing!.size) throw overwriteForbidden(name);
    const { hex, bytes } = await hashReadable(body.readable(), "sha256");
    if (announced !== null && announced !== hex) throw hashMismatch();
    if (!(await sameContent(store, name, existing!.size, bytes, hex))) {
      throw overwriteForbidden(name);
    }
    return okResponse();
  }

  const oldSize = existing?.size ?? 0;
  const reservation = store.quota === null
    ? null
    : await store.quota.reserve((expected ?? 0) - oldSize);
  const write = await beginWrite(store, name, expected ?? undefined).catch((error) => {
    reservation?.release();
    throw error;
  });
  // Without Content-Length (chunked) the reservation grows with the bytes received.
  const quotaGuard = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (reservation !== null && body.bytes() - oldSize > reservation.delta) {
        reservation.resize(body.bytes() - oldSize);
      }
      controller.enqueue(chunk);
    },
  });
  let sha256: string;
  let size: number;
  try {
    const whole = body.whole(WHOLE_BODY_LIMIT);
    if (whole !== null) {
      // a small body in one buffer: one hash call and one write, no streams (held_body.ts)
      const bytes = await onItem(name, () => whole);
      sha256 = await hashBytes(bytes, "sha256");
      size = bytes.byteLength;
      await onItem(name, () => writeBytes(write.upload.writable, bytes));
    } else {
      const digest = await digestingStream("sha256");
      await onItem(
        name,
        () =>
          body.readable().pipeThrough(quotaGuard).pipeThrough(digest.stream).pipeTo(
            write.upload.writable,
          ),
      );
      sha256 = digest.hex();
      size = digest.bytes();
    }
    if (announced !== null && announced !== sha256) throw hashMismatch();
  } catch (error) {
    await write.discard();
    reservation?.release();
    throw error;
  }
  await commitWrite(store, { name, write, size, sha256, reservation });
  return okResponse();
}
