// The batch lifecycle: the statuses, which change is legal, and the patch each step writes. The only place that
// spells a status name or decides a status change; pure and import-free (types aside), so workflow code uses it too.
//
//   pending ──begin──> processing ──finish──> completed | failed
//      │                   │
//      ├──requestCancel──> cancelling ──finish──> cancelled
//      │                   │
//      └──expire─────────> expired        (the completion window passed first)
//
//   completed | failed ──reopen──> processing   (a redrive: POST /v1/batch/{id}/retry; see `reopen`)
//
// `completed` means every item reached an outcome (some may have failed); `failed` means the batch itself could not
// be processed; `expired` means its completion window ended first: the items processed by then keep their outcome,
// the others count as expired. Adding a status is a change here: the list, its transitions, and the step that enters it.
import type { PayloadInfo } from './codec.ts';
import type { UploadState } from './invalid-items.ts';
import type { Counts } from './progress.ts';
import { err, ok, type Result } from './result.ts';

/** A status change the lifecycle does not allow from `from`. */
export interface IllegalTransition {
  kind: 'illegal_transition';
  from: BatchStatus;
  to: BatchStatus;
}

export const batchStatuses = ['pending', 'processing', 'completed', 'failed', 'cancelling', 'cancelled', 'expired'] as const;
export type BatchStatus = (typeof batchStatuses)[number];

const nextStatuses: Record<BatchStatus, readonly BatchStatus[]> = {
  pending: ['processing', 'cancelling', 'expired'],
  processing: ['completed', 'failed', 'cancelling', 'expired'],
  cancelling: ['cancelled'],
  completed: [],
  failed: [],
  cancelled: [],
  expired: [],
};

/** The status a batch is created with. */
export const initialStatus: BatchStatus = 'pending';

export function canTransition(from: BatchStatus, to: BatchStatus): boolean {
  return nextStatuses[from].includes(to);
}

export function transition(from: BatchStatus, to: BatchStatus): Result<BatchStatus, IllegalTransition> {
  return canTransition(from, to) ? ok(to) : err({ kind: 'illegal_transition', from, to });
}

/** A final status has no way out. */
export function isFinal(status: BatchStatus): boolean {
  return nextStatuses[status].length === 0;
}

/** Final: nothing more happens to the batch but its webhook. */
export const finalStatuses: readonly BatchStatus[] = batchStatuses.filter(isFinal);
/** Unfinished: a runner owes the batch work (after a restart these are resumed). */
export const unfinishedStatuses: readonly BatchStatus[] = batchStatuses.filter((status) => !isFinal(status));
/** A client may still ask these to stop. */
export const cancellableStatuses: readonly BatchStatus[] = batchStatuses.filter((status) => canTransition(status, 'cancelling'));

/** Waiting for a runner to begin it: the status submit leaves a batch in until it is started. */
export function awaitsStart(status: BatchStatus): boolean {
  return status === initialStatus;
}

/** A runner schedules segments only for a batch in this status. */
export function schedulesSegments(status: BatchStatus): boolean {
  return status === 'processing';
}

/** A segment that is already running may still record its outcome (not once cancel was asked or the batch ended). */
export function acceptsSegmentOutcomes(status: BatchStatus): boolean {
  return !isFinal(status) && status !== 'cancelling';
}

/** The one good ending: every item has an outcome. `status` may come from outside (a client reading the API). */
export function isCompleted(status: string): boolean {
  return status === 'completed';
}

/**
 * How many items count as `expired`: in an expired batch, every item without an outcome; none in any other status.
 * Derived rather than stored, so `succeeded + failed + expired = total` holds for every reader and every backend.
 */
export function expiredItems(batch: { status: BatchStatus; counts: Counts }): number {
  return batch.status === 'expired' ? Math.max(0, batch.counts.total - batch.counts.processed) : 0;
}

/** Longest path from the initial status: strictly larger after every legal transition. */
const statusDepth: Record<BatchStatus, number> = (() => {
  const depth = Object.fromEntries(batchStatuses.map((status) => [status, 0])) as Record<BatchStatus, number>;
  // The lifecycle is acyclic and short: relaxing every edge once per status reaches the fixed point.
  for (let round = 0; round < batchStatuses.length; round += 1) {
    for (const from of batchStatuses) for (const to of nextStatuses[from]) depth[to] = Math.max(depth[to], depth[from] + 1);
  }
  return depth;
})();

const maxStatusDepth = Math.max(...Object.values(statusDepth));

/**
 * The batch's progress version: a number that grows with every change a watcher can see (a status change or an item
 * outcome) and with nothing else, so the same state gives the same number on every connection and every replica. It
 * is the SSE event id: a client resuming with `Last-Event-ID: n` has seen every state up to n. Stable once the batch
 * is final (its counts no longer move), so a final event id keeps meaning "final state seen".
 *
 * A redrive (`reopen`) moves the status back and then moves items from failed to succeeded without changing
 * `processed`: each redrive adds a step larger than anything one run can add (`total` items plus the deepest status),
 * and within a redrive `succeeded` counts too. Batches never redriven keep the numbers they always had.
 */
export function progressVersion(batch: { status: BatchStatus; counts: Counts; redrives?: number | null | undefined }): number {
  const base = statusDepth[batch.status] + batch.counts.processed;
  const redrives = batch.redrives ?? 0;
  if (redrives === 0) return base;
  return base + redrives * (batch.counts.total + maxStatusDepth + 1) + batch.counts.succeeded;
}

/** A redrive may reopen a batch whose run ended with failed items (or items without an outcome) in these statuses. */
const reopenableStatuses: readonly BatchStatus[] = ['completed', 'failed'];

/** Why a batch cannot be redriven, typed: a status other than completed/failed, or nothing left to process. */
export type ReopenRefusal =
  | { kind: 'not_redrivable'; status: BatchStatus }
  | { kind: 'nothing_to_redrive'; status: BatchStatus }
  | { kind: 'upload_open'; status: BatchStatus };

/** The patch of a redrive: the status, the cleared end, the redrive's number and a webhook owed anew. */
export interface ReopenPatch {
  status: BatchStatus;
  completedAt: null;
  error: null;
  redrives: number;
}

/**
 * A redrive reopens a final batch: completed or failed -> processing, with `redrives` one more. Only the items whose
 * outcome is `failed` (and those a stopped run never reached) are processed again; the others keep their outcome.
 * Refused for a batch that is not final yet (it is still running: nothing to reopen), for cancelled or expired
 * batches (the client ended them, or their window did), when every item succeeded, and while the batch's upload is
 * still open (`invalid_items: "record"`: it ended before its body did).
 */
export function reopen(
  batch: { status: BatchStatus; counts: Counts; redrives?: number | null | undefined; upload?: UploadState | null | undefined },
): Result<ReopenPatch, ReopenRefusal> {
  if (!reopenableStatuses.includes(batch.status)) return err({ kind: 'not_redrivable', status: batch.status });
  // Its total is not known yet: a run now would wait for segments of an upload that may never end.
  if (uploadOpen(batch)) return err({ kind: 'upload_open', status: batch.status });
  if (batch.counts.succeeded >= batch.counts.total) return err({ kind: 'nothing_to_redrive', status: batch.status });
  return ok({ status: 'processing', completedAt: null, error: null, redrives: (batch.redrives ?? 0) + 1 });
}

/** A patch that is a redrive's reopen: from a reopenable status to processing with exactly the next redrive number. */
function isReopen(current: { status: BatchStatus; redrives?: number | null | undefined }, patch: { status?: BatchStatus; redrives?: unknown }): boolean {
  return reopenableStatuses.includes(current.status) && patch.status === 'processing' && patch.redrives === (current.redrives ?? 0) + 1;
}

/** The fields a status change writes besides the status. */
export interface StatusPatch {
  status: BatchStatus;
  startedAt?: string;
  completedAt?: string;
  error?: string;
}

type Step = Result<StatusPatch, IllegalTransition>;

function step(from: BatchStatus, patch: StatusPatch): Step {
  return canTransition(from, patch.status) ? ok(patch) : err({ kind: 'illegal_transition', from, to: patch.status });
}

/** A runner takes the batch up: pending -> processing, stamped with `now` (ISO 8601). */
export function begin(batch: { status: BatchStatus }, now: string): Step {
  return step(batch.status, { status: 'processing', startedAt: now });
}

/** A client asks the batch to stop: pending or processing -> cancelling. */
export function requestCancel(batch: { status: BatchStatus }): Step {
  return step(batch.status, { status: 'cancelling' });
}

/**
 * When the completion window passes, segments already writing get this long to finish and be counted before the
 * batch expires, so that a memory written in the last moment is counted as written. A write that takes longer (a sink
 * that stopped answering) is not waited for: if it lands later its memory is in the store while the batch counts it
 * expired (the batch's counts never move once it is final).
 */
export const expiryGraceMs = 2_000;

/**
 * The completion window passed before the batch was final: pending or processing -> expired, stamped with `now`.
 * A cancelling batch is not expired: it ends cancelled as asked. Items processed by then keep their outcome.
 */
export function expire(batch: { status: BatchStatus; counts: Counts }, now: string, window: string): Step {
  const missing = batch.counts.total - batch.counts.processed;
  return step(batch.status, {
    status: 'expired',
    completedAt: now,
    error: `the completion window of ${window} passed with ${missing} memories not processed`,
  });
}

/**
 * No more segments will run: the final status. Cancelling ends cancelled; a processing batch ends failed when the run
 * gave up (`failure`, its reason) or when some items have no outcome, else completed. Illegal from any other status.
 */
export function finish(batch: { status: BatchStatus; counts: Counts }, now: string, failure?: string): Step {
  if (batch.status === 'cancelling') return step(batch.status, { status: 'cancelled', completedAt: now });
  if (failure) return step(batch.status, { status: 'failed', completedAt: now, error: failure });
  const missing = batch.counts.total - batch.counts.processed;
  if (missing <= 0) return step(batch.status, { status: 'completed', completedAt: now });
  return step(batch.status, { status: 'failed', completedAt: now, error: `${missing} memories have no outcome` });
}

/** Where an upload's segments stand: what the batch record says of its payload while items still arrive. */
export interface StoredUpload {
  segments: number;
  rawBytes: number;
  storedBytes: number;
  /** Items in those segments (valid ones and recorded invalid ones): the batch's total so far. */
  received: number;
}

/** The fields an upload step writes: the payload so far, the upload state and the total it gives. */
export interface UploadPatch {
  payload: PayloadInfo;
  upload: UploadState;
  total: number;
  status?: BatchStatus;
  error?: string;
}

/** The batch stopped taking items (cancelled by its client, or final): the upload must stop too. */
export interface UploadClosed {
  kind: 'upload_closed';
  status: BatchStatus;
}

type Uploading = { status: BatchStatus; payload: PayloadInfo };

function uploadFields(batch: Uploading, stored: StoredUpload, complete: boolean, now?: string): UploadPatch {
  return {
    payload: { ...batch.payload, segments: stored.segments, rawBytes: stored.rawBytes, storedBytes: stored.storedBytes },
    upload: { complete, received: stored.received, ...(now ? { storedAt: now } : {}) },
    total: stored.received,
  };
}

/**
 * An open upload that stored no segment for this long is taken as abandoned: the process reading its body is gone
 * (it crashed or restarted). A live upload that sends nothing is closed well before by the HTTP server's idle timeout
 * (BATCHMEM_IDLE_TIMEOUT_MS, 2 minutes by default), and one still sending fills a segment (1 MiB at most) in 5 minutes
 * unless it sends under 3.5 kB/s. Without this a runner would wait forever for segments that cannot come.
 */
export const uploadStallMs = 5 * 60_000;

/** True when `batch`'s upload is open and stored nothing since `uploadStallMs` before `nowMs`. */
export function uploadStalled(batch: { upload?: UploadState | null | undefined; createdAt: string }, nowMs: number): boolean {
  if (!uploadOpen(batch)) return false;
  const since = Date.parse(batch.upload?.storedAt ?? batch.createdAt);
  return nowMs - since > uploadStallMs;
}

/** What the record says was stored: for steps taken by a runner, which has no count of its own. */
export function storedSoFar(batch: { payload: PayloadInfo; counts: Counts; upload?: UploadState | null | undefined }): StoredUpload {
  const { segments, rawBytes, storedBytes } = batch.payload;
  return { segments, rawBytes, storedBytes, received: batch.upload?.received ?? batch.counts.total };
}

/**
 * True while the batch's upload is still open: its segment count and total may still grow, and a runner that ran out
 * of segments waits for more instead of finishing. A record without upload state was complete when created.
 */
export function uploadOpen(batch: { upload?: UploadState | null | undefined }): boolean {
  return batch.upload?.complete === false;
}

/**
 * True when the batch takes no more of its body: its client cancelled it or its completion window ended. A batch that
 * ended `failed` or `completed` while its body streamed (a failure limit tripped, or its run gave up) still takes the
 * rest, as a JSON body's batch has all of it: the items never reached stay counted (processed < total) and a redrive
 * (`reopen`) processes them.
 */
function takesNoMoreItems(status: BatchStatus): boolean {
  return status === 'cancelling' || (isFinal(status) && !reopenableStatuses.includes(status));
}

/**
 * A segment of an open upload is stored (`invalid_items: "record"` processes while the body streams): the payload and
 * the total grow. Refused once the batch is cancelling, cancelled or expired, so that the upload stops reading.
 */
export function uploadProgress(batch: Uploading, stored: StoredUpload, now?: string): Result<UploadPatch, UploadClosed> {
  if (takesNoMoreItems(batch.status)) return err({ kind: 'upload_closed', status: batch.status });
  return ok(uploadFields(batch, stored, false, now));
}

/**
 * The last segment is stored: the total is final, and the request's fingerprint (`bodySha256`, hex) is kept with the
 * upload for a repeat of the request to be compared with. Refused, like a progress step, once the batch stopped
 * taking items.
 */
export function endUpload(batch: Uploading, stored: StoredUpload, bodySha256: string): Result<UploadPatch, UploadClosed> {
  if (takesNoMoreItems(batch.status)) return err({ kind: 'upload_closed', status: batch.status });
  const fields = uploadFields(batch, stored, true);
  return ok({ ...fields, upload: { ...fields.upload, bodySha256 } });
}

/**
 * The body ended before its last byte (the client disconnected, or the body turned out malformed part-way) while
 * the batch was already processing: the batch is cancelled, not completed, and the items processed so far keep their
 * outcome. The total is what was stored; the upload stays marked incomplete. A batch already final keeps its end.
 */
export function abandonUpload(
  batch: Uploading,
  stored: StoredUpload,
  reason: string,
): Result<UploadPatch, UploadClosed> {
  if (isFinal(batch.status)) return err({ kind: 'upload_closed', status: batch.status });
  const fields = uploadFields(batch, stored, false);
  if (batch.status === 'cancelling') return ok(fields);
  const cancel = requestCancel(batch);
  if (!cancel.ok) return err({ kind: 'upload_closed', status: batch.status });
  // The body reader's own reason for a dropped connection already says so: not twice.
  const ended = 'the upload ended before the body was complete';
  return ok({ ...fields, status: cancel.value.status, error: reason.startsWith(ended) ? reason : `${ended}: ${reason}` });
}

/**
 * What a repository stores for `patch` applied to `current`: the record with the patch and the next version, or the
 * typed refusal when the patch changes the status in a way the lifecycle does not allow (a final status is left only
 * by a redrive's `reopen`, whose patch carries the next redrive number). Every adapter applies
 * patches through this, under its compare-and-set on the version, so the status it checks is the status it replaces.
 * `total` (only an upload step writes it) sets `counts.total`; the other counters move only with segment outcomes.
 */
export function applyPatch<B extends { status: BatchStatus; version: number; counts: Counts; redrives?: number | null | undefined }>(
  current: B,
  patch: Partial<Omit<B, 'version' | 'counts'>> & { total?: number },
): Result<B, IllegalTransition> {
  if (
    patch.status !== undefined && patch.status !== current.status && !canTransition(current.status, patch.status) &&
    !isReopen(current, patch)
  ) {
    return err({ kind: 'illegal_transition', from: current.status, to: patch.status });
  }
  const { total, ...fields } = patch;
  const counts = total === undefined ? current.counts : { ...current.counts, total };
  return ok({ ...current, ...fields, counts, version: current.version + 1 });
}
