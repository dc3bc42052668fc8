// Giving a large buffer's memory back as soon as its owner is done with it, instead of at V8's next full collection.
// V8 frees an ArrayBuffer's memory only once a collection finds it dead; a buffer promoted to the old generation (any
// buffer held across a few awaits) waits for a full collection, which V8 starts when external memory has grown by
// 64 MiB, or never on a thread that has gone quiet. Segment work makes megabyte buffers (a segment, its compressed
// and decompressed forms), so each thread carried up to 64 MiB of dead ones, and more than that of live-looking
// memory after an upload ended (docs/benchmarks.md, peak RSS). Detaching an ArrayBuffer frees its memory at once.

/**
 * ArrayBuffers this size or smaller are left to the collector: they cost little, and Node.js cuts small Buffers
 * from shared pools of this size (`Buffer.poolSize`, 64 KiB in Node.js 24), which must never be detached.
 */
export const releaseMaxKeptBytes = 64 * 1024;

/**
 * Frees the memory under `view` now by detaching its ArrayBuffer (`ArrayBuffer.prototype.transfer(0)`); afterwards
 * every view of that ArrayBuffer has length 0. Only for a buffer nothing else still reads: the caller made it (or
 * was handed it to own), and no other view of the same ArrayBuffer is in use. A SharedArrayBuffer, a detached one,
 * one of `releaseMaxKeptBytes` or less, or one Node.js marked untransferable is left alone. Returns the bytes freed
 * (0 when left alone).
 */
export function releaseBuffer(view: ArrayBufferView | undefined): number {
  if (view === undefined) return 0;
  const buffer = view.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.detached || buffer.byteLength <= releaseMaxKeptBytes) return 0;
  const bytes = buffer.byteLength;
  try {
    buffer.transfer(0);
  } catch {
    // Untransferable (a pool, or memory Node.js's native side keeps): the collector frees it as before.
    return 0;
  }
  return bytes;
}
