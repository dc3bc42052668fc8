// The public shape of a batch, shared by the HTTP API and the webhook payload. It never carries the secret.
import { type Batch, compressionRatio } from '../domain/batch.ts';
import { expiredItems, isFinal, progressVersion } from '../domain/lifecycle.ts';
import { progressFraction } from '../domain/progress.ts';

/** An item error as Papr clients read it: `code` is the HTTP-like status of that item (always 500 here). */
export interface PaprItemError {
  index: number;
  error: string;
  code: number;
}

/**
 * `errors` is what the caller read of the batch's item errors (at most a page; the full list is at
 * /v1/batch/{id}/errors); answers that did not read them carry an empty list.
 */
export function batchResource(batch: Batch, errors: PaprItemError[] = []) {
  return {
    id: batch.id,
    status: batch.status,
    created_at: batch.createdAt,
    started_at: batch.startedAt,
    completed_at: batch.completedAt,
    request_counts: { ...batch.counts, expired: expiredItems(batch) },
    progress: Math.round(progressFraction(batch.counts) * 10_000) / 10_000,
    workflow_id: batch.workflowId,
    payload: {
      codec: batch.payload.codec,
      segments: batch.payload.segments,
      raw_bytes: batch.payload.rawBytes,
      stored_bytes: batch.payload.storedBytes,
      compression_ratio: compressionRatio(batch.payload),
    },
    webhook: {
      url: batch.webhook.url,
      delivered: batch.webhook.delivered,
      attempts: batch.webhook.attempts,
      last_error: batch.webhook.lastError,
    },
    error: batch.error,
    // Papr's answer fields, so its SDKs' parsed objects are filled in; batchmem's own fields above stay as they are.
    batch_id: batch.id,
    code: isFinal(batch.status) ? 200 : 202,
    message: paprMessage(batch),
    total_processed: batch.counts.processed,
    total_successful: batch.counts.succeeded,
    total_failed: batch.counts.failed,
    errors,
    completion_window: batch.completionWindow ?? null,
    expires_at: batch.expiresAt ?? null,
    metadata: { ...batch.metadata },
    /** The SSE event id of this state (see `progressVersion`). */
    progress_version: progressVersion(batch),
  };
}

function paprMessage(batch: Batch): string {
  const { total, processed, failed } = batch.counts;
  const base = `batch ${batch.id} is ${batch.status}: ${processed} of ${total} memories processed, ${failed} failed`;
  return batch.error ? `${base} (${batch.error})` : base;
}

export type BatchResource = ReturnType<typeof batchResource>;
