// The public shape of a batch, shared by the HTTP API and the webhook payload: its schema (the OpenAPI `Batch`) and
// the mapping from the record, typed by that schema. It never carries the secret.
import { type Batch, compressionRatio, metadataKeyPattern } from '../domain/batch.ts';
import { z } from '@hono/zod-openapi';
import {
  batchStatuses,
  cancellableStatuses,
  expiredItems,
  finalStatuses,
  isCompleted,
  isFinal,
  progressVersion,
  unfinishedStatuses,
} from '../domain/lifecycle.ts';
import { defaultInvalidItems, invalidItemsModes } from '../domain/invalid-items.ts';
import { defaultOnExisting, onExistingModes } from '../domain/memory.ts';
import { progressFraction, type WriteCounts } from '../domain/progress.ts';
import type { Services } from './services.ts';

export const MetadataDoc = z
  .record(z.string().regex(metadataKeyPattern), z.string().max(512))
  .openapi({ description: 'Up to 16 string pairs of your own (keys [A-Za-z0-9_-]{1,64}, values up to 512 characters)', example: { job: 'nightly-sync', source: 'crm' } });

/**
 * The batch status, with the lifecycle's sets as extensions so that clients (the dashboard) read them from here
 * instead of keeping a copy: `x-final` (nothing more happens), `x-unfinished` (in lifecycle order),
 * `x-cancellable`, and `x-completed` (the one good ending).
 */
const BatchStatusDoc = z.enum(batchStatuses).openapi({
  description:
    'pending -> processing -> completed | failed; pending or processing -> cancelling -> cancelled; pending or processing -> expired (the completion window passed); completed or failed -> processing again on a retry (POST /v1/batch/{id}/retry)',
  'x-final': [...finalStatuses],
  'x-unfinished': [...unfinishedStatuses],
  'x-cancellable': [...cancellableStatuses],
  'x-completed': batchStatuses.find(isCompleted),
});

const Counts = z.object({
  total: z.number().int(),
  processed: z.number().int().openapi({ description: 'succeeded + failed' }),
  succeeded: z.number().int(),
  failed: z.number().int(),
  created: z.number().int().openapi({ description: 'Succeeded items that stored a new memory' }),
  updated: z.number().int().openapi({ description: 'Succeeded items that changed the memory stored under their external_id (its version went up)' }),
  unchanged: z.number().int().openapi({ description: 'Succeeded items whose external_id was stored with the same value, or skipped by on_existing: skip' }),
  expired: z.number().int().openapi({ description: 'Items without an outcome when the completion window passed; 0 unless the batch is expired' }),
});

/**
 * The batch resource's schema: it validates nothing at run time but is the OpenAPI `Batch` and the type
 * `batchResource` must return, so the answer and its description cannot drift apart.
 */
export const batchResourceSchema = z
  .object({
    id: z.string(),
    status: BatchStatusDoc,
    created_at: z.string(),
    started_at: z.string().nullable(),
    completed_at: z.string().nullable(),
    request_counts: Counts,
    progress: z.number().min(0).max(1),
    workflow_id: z.string().nullable(),
    payload: z.object({
      codec: z.string(),
      segments: z.number().int(),
      raw_bytes: z.number().int(),
      stored_bytes: z.number().int(),
      compression_ratio: z.number(),
    }),
    webhook: z.object({
      url: z.string().nullable(),
      delivered: z.boolean(),
      attempts: z.number().int(),
      last_error: z.string().nullable(),
    }),
    error: z.string().nullable(),
    completion_window: z.string().nullable(),
    expires_at: z.string().nullable().openapi({ description: 'When the batch expires unless final before (ISO 8601)' }),
    metadata: MetadataDoc,
    max_failed_items: z.number().int().nullable().openapi({ description: 'Failed memories tolerated before the batch stops (as submitted), or null' }),
    max_failed_percent: z.number().nullable().openapi({ description: 'Failed memories tolerated as a percentage of the total (as submitted), or null' }),
    on_existing: z.enum(onExistingModes).openapi({ description: 'What a memory whose external_id is already stored does: update it, or skip it (unchanged)' }),
    invalid_items: z.enum(invalidItemsModes).openapi({ description: 'What an invalid memory does: reject refuses the batch, record makes it a failed item' }),
    upload: z
      .object({
        complete: z.boolean(),
        received: z.number().int().openapi({ description: 'Memories stored so far (invalid ones recorded included)' }),
      })
      .openapi({ description: 'The upload: with invalid_items record, processing starts while it still streams; request_counts.total is final once complete' }),
    redrives: z.number().int().openapi({ description: 'Times the batch was retried (POST /v1/batch/{id}/retry); 0 for none' }),
    progress_version: z.number().int().openapi({ description: 'Grows with every status change and item outcome: the SSE event id of this state' }),
    batch_id: z.string().openapi({ description: 'Papr: the same as id' }),
    code: z.number().int().openapi({ description: 'Papr: 202 while unfinished, 200 once final' }),
    message: z.string().openapi({ description: 'Papr: the state in words' }),
    total_processed: z.number().int(),
    total_successful: z.number().int(),
    total_failed: z.number().int().openapi({ description: 'Papr: failed items, plus in an expired batch those never processed' }),
    errors: z
      .array(z.object({ index: z.number().int(), error: z.string(), code: z.number().int().openapi({ description: '400 for an invalid memory, 500 for a failed write' }) }))
      .openapi({ description: 'Papr: the first 100 item errors on a single batch; empty in the submit answer, lists and events' }),
    webhook_secret: z.string().optional().openapi({ description: 'Only in the submit answer, once, when the server generated it' }),
  })
  .openapi('Batch');


/** An item error as Papr clients read it: `code` is the HTTP-like status of that item (400 for an invalid item, 500 for a failed write). */
export interface PaprItemError {
  index: number;
  error: string;
  code: number;
}

/**
 * `written` splits the succeeded items by write outcome (created, updated, unchanged), as the ledger counted them with
 * `succeeded` (`outcomesOf`). `errors` is what the caller read of the batch's item errors (at most a page; the full list is at
 * /v1/batch/{id}/errors); answers that did not read them carry an empty list.
 */
export function batchResource(batch: Batch, written: WriteCounts, errors: PaprItemError[] = []): BatchResource {
  return {
    id: batch.id,
    status: batch.status,
    created_at: batch.createdAt,
    started_at: batch.startedAt,
    completed_at: batch.completedAt,
    request_counts: { ...batch.counts, ...written, expired: expiredItems(batch) },
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
    // Papr's SDKs know no expired state: items an expired batch never stored count as failed for them.
    total_failed: batch.counts.failed + expiredItems(batch),
    errors,
    completion_window: batch.completionWindow ?? null,
    expires_at: batch.expiresAt ?? null,
    metadata: { ...batch.metadata },
    max_failed_items: batch.failureLimits?.maxFailedItems ?? null,
    max_failed_percent: batch.failureLimits?.maxFailedPercent ?? null,
    invalid_items: batch.invalidItems ?? defaultInvalidItems,
    on_existing: batch.onExisting ?? defaultOnExisting,
    // Only what the docs promise: `storedAt` is the runner's stall clock, not part of the resource.
    upload: batch.upload ? { complete: batch.upload.complete, received: batch.upload.received } : { complete: true, received: batch.counts.total },
    redrives: batch.redrives ?? 0,
    /** The SSE event id of this state (see `progressVersion`). */
    progress_version: progressVersion(batch),
  };
}

function paprMessage(batch: Batch): string {
  const { total, processed, failed } = batch.counts;
  const expired = expiredItems(batch);
  const base = `batch ${batch.id} is ${batch.status}: ${processed} of ${total} memories processed, ${failed} failed${expired > 0 ? `, ${expired} expired` : ''}`;
  return batch.error ? `${base} (${batch.error})` : base;
}

/**
 * How the batch's succeeded items were written: from the batch record itself, counted by the ledger in the same step
 * as `succeeded`, so the three add up to it in every read, even while the batch runs on another thread or process.
 * A batch stored by an earlier version (`written: null`) has its outcomes in the memory sink only, read from there:
 * such a batch is final, or was running across the upgrade.
 */
export async function outcomesOf(services: Pick<Services, 'sink'>, batch: Batch): Promise<WriteCounts> {
  return batch.written ?? services.sink.countOutcomes(batch.key);
}

/** What the API and the webhook send: the schema's shape (the secret only ever added to the submit answer). */
export type BatchResource = Omit<z.infer<typeof batchResourceSchema>, 'webhook_secret'>;
