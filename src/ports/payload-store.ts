import type { Preparable } from './preparable.ts';

/** What a store keeps beside the bytes and checks again on read. */
export interface PayloadObjectInfo {
  sha256Hex: string;
  contentType: string;
  contentEncoding: string;
}

/** One upload folder of the store: the common part of its keys before the segment name, and how fresh it is. */
export interface PayloadFolder {
  /** What `deletePrefix` takes: `<organization>/<upload>` (no trailing slash). */
  prefix: string;
  /**
   * When something under the folder was last written, by the store's own clock: never earlier than the start of the
   * latest `put` into it that has completed (a `put` still running may not show yet).
   */
  lastWrittenAt: Date;
}

/** Raised when a key already holds different bytes. */
export class PayloadConflictError extends Error {
  override name = 'PayloadConflictError';
}

/** Raised when the bytes read back do not match the checksum stored with them. */
export class PayloadChecksumError extends Error {
  override name = 'PayloadChecksumError';
}

/**
 * Compressed batch segments, by key (`<organization>/<upload>/segment-000001.zst`).
 *
 * Guarantees an adapter must give:
 * - `put` never clobbers: writing identical bytes to an existing key succeeds, different bytes throw PayloadConflictError.
 *   Once it has resolved it holds no reference to `body`: the caller may free it (submit-batch.ts does).
 * - `get` returns the exact bytes written, or `undefined` for a key that does not exist. Where the store keeps a
 *   checksum, a mismatch throws PayloadChecksumError. One segment at a time: nothing reads a whole batch.
 * - `deletePrefix` removes every object under the prefix and returns how many it removed; a missing prefix removes 0.
 * - `folders` yields every folder that holds an object (the part of a key before its last `/`), each once, in no
 *   particular order, with its `lastWrittenAt`. It reads the store page by page (memory bounded whatever the store
 *   holds) and tolerates `deletePrefix` of a folder it has yielded while it runs. A folder written meanwhile may or may
 *   not be yielded. It may also yield a folder that holds only an interrupted write's leftovers (no object), which
 *   `deletePrefix` clears.
 */
export interface PayloadStore extends Preparable {
  put(key: string, body: Uint8Array, info: PayloadObjectInfo): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  deletePrefix(prefix: string): Promise<number>;
  folders(): AsyncIterable<PayloadFolder>;
  check(): Promise<void>;
  close(): Promise<void>;
}
