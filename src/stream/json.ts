// Streamed JSON arrays: items are encoded in batches of about 64 KiB, so a listing of any size
// leaves the server without ever being held in memory as a whole.

const encoder = new TextEncoder();
const BATCH_CHARS = 64 * 1024;

/**
 * Streams `[item,item,…]` (compact JSON, `[]` when empty) from an async iterable of batches of
 * items (a batch per directory, say: one await per batch rather than per item).
 */
export function jsonArrayStream(batches: AsyncIterable<unknown[]>): ReadableStream<Uint8Array> {
  const iterator = batches[Symbol.asyncIterator]();
  let opened = false;
  let count = 0;
  let finished = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (finished) return;
      let text = opened ? "" : "[";
      opened = true;
      while (text.length < BATCH_CHARS) {
        const next = await iterator.next();
        if (next.done) {
          finished = true;
          text += "]";
          break;
        }
        for (const item of next.value) text += (count++ > 0 ? "," : "") + JSON.stringify(item);
      }
      controller.enqueue(encoder.encode(text));
      if (finished) controller.close();
    },
    async cancel() {
      await iterator.return?.();
    },
  }, { highWaterMark: 0 });
}

/** Wraps a stream and reports how many bytes passed once it ends, errors or is cancelled. */
export function countingStream(
  source: ReadableStream<Uint8Array>,
  onDone: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let bytes = 0;
  let reported = false;
  const report = () => {
    if (!reported) {
      reported = true;
      onDone(bytes);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          report();
          controller.close();
          return;
        }
        bytes += value.byteLength;
        controller.enqueue(value);
      } catch (error) {
        report();
        controller.error(error);
      }
    },
    async cancel(reason) {
      report();
      await reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
