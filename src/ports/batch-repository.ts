import type { Batch, BatchStatus } from '../domain/batch.ts';
import type { IllegalTransition } from '../domain/lifecycle.ts';
import type { Counts, SegmentOutcome, WriteOutcomeName } from '../domain/progress.ts';
import type { Preparable } from './preparable.ts';

/**
 * Fields an update may change. Counters are not among them: they move only through `recordSegment`, except `total`,
 * which an upload step (`uploadProgress`, `endUpload`, `abandonUpload`) sets with the payload while items still
 * arrive. A status change comes from a lifecycle step (`begin`, `requestCancel`, `finish` in domain/lifecycle.ts).
 */
export type BatchPatch = Partial<
  Pick<Batch, 'status' | 'startedAt' | 'completedAt' | 'workflowId' | 'webhook' | 'error' | 'payload' | 'upload' | 'redrives'>
> & { total?: number };

/** One segment's outcome in a redrive: which of its failed items now succeeded, which failed again (and why). */
export interface RedriveOutcome {
  /** The redrive's number (`Batch.redrives` when it was reopened), 1 for the first. */
  redrive: number;
  segment: number;
  /** Items that failed before and succeeded now, each with what its write did (as the sink reported it). */
  recovered: { index: number; outcome: WriteOutcomeName }[];
  /** Items that failed again, with the error of this attempt. */
  failedAgain: ItemError[];
}

/** A per-item failure kept for `GET /v1/batch/{id}/errors` and the results listing. */
export interface ItemError {
  index: number;
  externalId: string | null;
  error: string;
}

/** One segment's recorded outcome, with the worker that produced it. */
export interface SegmentRecord extends SegmentOutcome {
  workerId: string;
  recordedAt: string;
}

/** A finished batch whose payload segments are due for deletion. */
export interface ExpiredPayload {
  key: string;
  /** The payload store prefix holding its segments. */
  prefix: string;
  completedAt: string;
}

/** Unfinished batches across every tenant, for the operators' gauges. */
export interface Backlog {
  /** Batches in each unfinished status (see `unfinishedStatuses`); a status with none may be absent. */
  byStatus: Partial<Record<BatchStatus, number>>;
  /** `createdAt` of the oldest batch in an unfinished status; null when there is none. */
  oldestCreatedAt: string | null;
}

/** What `list` filters on besides the organization; each given field must match. */
export interface BatchListQuery {
  status?: BatchStatus | undefined;
  /** Every pair must be in the batch's metadata, with exactly this value. */
  metadata?: Record<string, string> | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** Thrown by `list` for a cursor it did not issue. */
export class InvalidCursorError extends Error {
  override name = 'InvalidCursorError';
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/**
 * Batch records, their progress ledger and their per-item errors.
 *
 * Guarantees an adapter must give:
 * - `create` is idempotent on `batch.key`: when a record already exists it is returned unchanged with `created: false`.
 * - `get` returns `undefined` for an unknown key (never throws for "not found").
 * - `update` is a compare-and-set on `version`: it applies the patch and increments the version only when the stored
 *   version equals `expectedVersion`, else it returns `'conflict'` and changes nothing. Concurrent updates never lose one.
 *   The version moves with every status change, so the status the patch was computed from is the one it replaces; a
 *   patch whose status change the lifecycle forbids from there (`completed` -> `processing`) is refused with the
 *   typed `IllegalTransition` and changes nothing. Adapters apply patches through the domain's `applyPatch`.
 * - `recordSegment` is idempotent per (key, segment): the first outcome is stored with its item errors and added to the
 *   counters atomically; a repeat returns `applied: false` and changes nothing. Counters are therefore exact under retries.
 *   The counters include the segment's write outcomes (`outcome.written`: how many of its succeeded items were
 *   created, updated, unchanged), added in that same step, so a read (`get`, `list`) shows a segment's outcomes
 *   exactly when it shows its `succeeded`: `batch.written` always adds up to `counts.succeeded`. An outcome whose
 *   `written` does not add up to its `succeeded` is refused (RangeError, `checkSegmentOutcome`) and changes nothing.
 *   The outcomes are the sink's (`MemorySink.writeSegment`), which reports the first write's outcome when a segment is
 *   written again; so a segment whose writes landed but whose record did not (a crash between) is recorded, when it
 *   runs again, with the outcomes its first run had (not `unchanged` for its own earlier writes), and the first
 *   recorded outcome wins like the counts. A batch created with `written: null` (data of an earlier version) keeps
 *   null: its earlier segments' outcomes were never in the ledger.
 *   An outcome arriving once the batch is final (a segment still running when the batch expired) is not recorded
 *   either (`applied: false`): a final batch's counts never move.
 * - `list` pages newest first, filtered by organization and optionally status and metadata pairs; cursors are opaque.
 * - A final batch is reopened only by a redrive (`reopen` in domain/lifecycle.ts, a patch carrying the next `redrives`);
 *   its redrive outcomes then move items from failed to succeeded through `recordRedrive`.
 * - `delete` removes the record with its ledger and item errors; deleting a missing key is a no-op returning false.
 */
export interface BatchRepository extends Preparable {
  create(batch: Batch): Promise<{ created: boolean; batch: Batch }>;
  get(key: string): Promise<Batch | undefined>;
  update(key: string, expectedVersion: number, patch: BatchPatch): Promise<Batch | 'conflict' | IllegalTransition>;
  recordSegment(
    key: string,
    outcome: SegmentOutcome,
    itemErrors: ItemError[],
    workerId: string,
  ): Promise<{ applied: boolean; counts: Counts }>;
  listSegments(key: string): Promise<SegmentRecord[]>;
  /**
   * A redrive's outcome for one segment, idempotent per (key, redrive, segment) like `recordSegment`: the first is
   * applied atomically (each recovered item that had an item error loses it and moves from failed to succeeded,
   * counted by the errors actually removed so the counts stay exact, and its write outcome is added to `written` in
   * the same step; an item failing again keeps its error with the new text); a repeat, or one arriving once the batch is final again, returns `applied: false` and changes nothing.
   */
  recordRedrive(key: string, outcome: RedriveOutcome, workerId: string): Promise<{ applied: boolean; counts: Counts }>;
  /** Segments whose outcome in redrive `redrive` is recorded, ascending. */
  listRedriveSegments(key: string, redrive: number): Promise<number[]>;
  listErrors(key: string, afterIndex: number, limit: number): Promise<ItemError[]>;
  list(organization: string, query: BatchListQuery): Promise<Page<Batch>>;
  /** Removes the batch record, its ledger and its item errors. True when something was removed. */
  delete(key: string): Promise<boolean>;
  /**
   * Keys of batches with work left after a restart: status pending, processing or cancelling, or a final status
   * with a webhook URL whose delivery has not succeeded, has not given up (`webhook.gaveUp`), and has had fewer than
   * `maxWebhookAttempts` attempts.
   */
  listNeedingWork(maxWebhookAttempts: number): Promise<string[]>;
  /** Counts of batches in each unfinished status (all tenants) and the oldest one's creation time. */
  backlog(): Promise<Backlog>;
  /**
   * Payload retention (BATCHMEM_PAYLOAD_RETENTION): batches in a final status whose `completedAt` is at or before `completedBefore` and whose payload has not been
   * marked expired, oldest completion first, at most `limit`.
   */
  listExpiredPayloads(completedBefore: string, limit: number): Promise<ExpiredPayload[]>;
  /**
   * Which of `prefixes` (payload store prefixes, at most a few hundred) some batch record points at
   * (`payload.prefix`), whatever its status or payload expiry. For the sweep of uploads no batch points at.
   */
  referencedPrefixes(prefixes: string[]): Promise<Set<string>>;
  /** Records that a batch's payload segments are deleted, so it is not listed again. Idempotent; the record keeps its counts. */
  markPayloadExpired(key: string, expiredAt: string): Promise<void>;
  /** Throws when the backend cannot serve. */
  check(): Promise<void>;
  close(): Promise<void>;
}
