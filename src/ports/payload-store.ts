import type { Preparable } from './preparable.ts';

/** What a store keeps beside the bytes and checks again on read. */
export interface PayloadObjectInfo {
  sha256Hex: string;
  contentType: string;
  contentEncoding: string;
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
 * Compressed batch segments, by key (`<organization>/<batch key>/<upload>/segment-000001.zst`).
 *
 * Guarantees an adapter must give:
 * - `put` never clobbers: writing identical bytes to an existing key succeeds, different bytes throw PayloadConflictError.
 *   Once it has resolved it holds no reference to `body`: the caller may free it (submit-batch.ts does).
 * - `get` returns the exact bytes written, or `undefined` for a key that does not exist. Where the store keeps a
 *   checksum, a mismatch throws PayloadChecksumError. One segment at a time: nothing reads a whole batch.
 * - `deletePrefix` removes every object under the prefix and returns how many it removed; a missing prefix removes 0.
 */
export interface PayloadStore extends Preparable {
  put(key: string, body: Uint8Array, info: PayloadObjectInfo): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  deletePrefix(prefix: string): Promise<number>;
  check(): Promise<void>;
  close(): Promise<void>;
}
