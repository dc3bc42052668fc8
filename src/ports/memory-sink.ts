import type { MemoryAttributes, MemoryRecord } from '../domain/memory.ts';

export type ItemOutcome = { index: number; ok: true; memoryId: string } | { index: number; ok: false; error: string };

export interface StoredMemoryRef {
  index: number;
  memoryId: string;
  externalId: string | null;
  /** The Papr fields stored with the memory, exactly as written; null when it has none. */
  attributes: MemoryAttributes | null;
}

/**
 * The memory store that batches feed.
 *
 * Guarantees an adapter must give:
 * - `writeSegment` is idempotent by `memoryId`: writing a record whose id exists already stores nothing new and still
 *   reports the item as ok. It returns one outcome per record, in input order. A per-item rejection is an outcome,
 *   a failure of the whole call (backend down) is a thrown error, and the caller retries the segment.
 * - `listByBatch` returns stored memories of a batch ordered by index, starting after `afterIndex`, each with the
 *   attributes it was written with.
 * - `countByBatch` counts stored memories of a batch (each id once).
 */
export interface MemorySink {
  writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]>;
  listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]>;
  countByBatch(batchKey: string): Promise<number>;
  /** For a sink that forwards to another service: the id that service gave each memory, where it named one. */
  sinkIds?(memoryIds: string[]): Promise<Map<string, string>>;
  check(): Promise<void>;
  close(): Promise<void>;
}
