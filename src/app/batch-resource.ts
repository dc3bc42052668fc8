// The public shape of a batch, shared by the HTTP API and the webhook payload. It never carries the secret.
import { type Batch, compressionRatio } from '../domain/batch.ts';
import { progressFraction } from '../domain/progress.ts';

export function batchResource(batch: Batch) {
  return {
    id: batch.id,
    status: batch.status,
    created_at: batch.createdAt,
    started_at: batch.startedAt,
    completed_at: batch.completedAt,
    request_counts: { ...batch.counts },
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
  };
}

export type BatchResource = ReturnType<typeof batchResource>;
