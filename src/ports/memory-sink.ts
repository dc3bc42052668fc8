import type { MemoryAttributes, MemoryRecord } from '../domain/memory.ts';
import type { WriteCounts, WriteOutcomeName } from '../domain/progress.ts';
import type { Preparable } from './preparable.ts';

export type ItemOutcome =
  | { index: number; ok: true; memoryId: string; outcome: WriteOutcomeName }
  | { index: number; ok: false; error: string };

export interface StoredMemoryRef {
  index: number;
  memoryId: string;
  externalId: string | null;
  /** What this batch's write did to the memory. */
  outcome: WriteOutcomeName;
  /** The memory's version now: 1 when created, one more for each update since (by any batch). */
  version: number;
  /** The Papr fields stored with the memory, exactly as written; null when it has none. */
  attributes: MemoryAttributes | null;
  /**
   * For a sink that forwards to another service, the id that service gave the memory in its answer to this item's
   * delivery, or (an item that sent nothing, the memory being unchanged) to the delivery that last sent it; null when
   * that answer named none. Absent for a sink that is the memory store itself (the memory id is the id).
   */
  sinkId?: string | null;
}

/**
 * The memory store that batches feed.
 *
 * Guarantees an adapter must give:
 * - Upsert by external id, scoped to the tenant (organization and namespace), across batches: a record whose
 *   `externalId` the tenant already stored keeps that memory's id; with the same `fingerprint` (or `onExisting:
 *   "skip"`) nothing changes and its outcome is `unchanged`, else the memory takes the record's value, its version
 *   goes up by one and the outcome is `updated`. A new external id (or none) is `created` under `memoryId`.
 *   Concurrent writers of one external id end with one memory whose version counts the updates applied.
 * - `writeSegment` is idempotent per (batch, index): writing a record again (a retried segment) stores nothing new
 *   and reports the outcome and memory id of the first write. It returns one outcome per record, in input order. A
 *   per-item rejection is an outcome, a failure of the whole call (backend down) is a thrown error, and the caller
 *   retries the segment.
 * - `listByBatch` returns the memories a batch wrote ordered by index, starting after `afterIndex`, each with its
 *   write outcome and the attributes it holds (and, for a sink that forwards, the target's id for it).
 * - `countOutcomes` counts the items a batch stored (each index once), split by write outcome.
 */
export interface MemorySink extends Preparable {
  writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]>;
  listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]>;
  countOutcomes(batchKey: string): Promise<WriteCounts>;
  check(): Promise<void>;
  /**
   * Optional, for a sink that holds writes back for its target (the HTTP sink's Retry-After gate and breaker): fails
   * while it does. `check` covers it too; this is for the thread that writes when readiness is asked on another one.
   */
  checkFlowing?(): Promise<void>;
  /**
   * Optional, for a stopping process: ends the writes still waiting on the target now (they throw, their segments are
   * retried after a restart); nothing is written after it.
   */
  interrupt?(): Promise<void>;
  close(): Promise<void>;
}
