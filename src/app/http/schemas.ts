// Schemas of the HTTP API, used to validate requests and to generate the OpenAPI document.
import { z } from '@hono/zod-openapi';
import { batchIdPattern, batchIdRule } from '../../domain/batch.ts';
import { batchStatuses, cancellableStatuses, finalStatuses, isCompleted, unfinishedStatuses } from '../../domain/lifecycle.ts';
import { itemOutcome, itemOutcomes } from '../../domain/progress.ts';

/** A client-chosen batch id (domain/batch.ts's rule). */
export const BatchIdSchema = z.string().regex(batchIdPattern);
export { batchIdRule };

export const BatchIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: 'b_2f4c9a', description: 'The batch id' }),
});

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ example: 100 }),
  cursor: z.string().max(512).optional().openapi({ description: 'The next_cursor of the previous page' }),
});

export const ListQuery = PageQuery.extend({
  status: z.enum(batchStatuses).optional(),
  // Read from `metadata[key]=value` parameters by the handler (zod sees no `metadata` key); documented here.
  metadata: z
    .record(z.string(), z.string())
    .optional()
    .openapi({
      param: { name: 'metadata', in: 'query', style: 'deepObject', explode: true },
      description: 'Only batches whose metadata holds every given pair: `metadata[source]=crm&metadata[job]=nightly`',
      example: { source: 'crm' },
    }),
});

const MetadataDoc = z
  .record(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), z.string().max(512))
  .openapi({ description: 'Up to 16 string pairs of your own (keys [A-Za-z0-9_-]{1,64}, values up to 512 characters)', example: { job: 'nightly-sync', source: 'crm' } });

const CompletionWindowDoc = z
  .string()
  .regex(/^[1-9][0-9]{0,6}(s|m|h|d)$/)
  .openapi({ description: 'Deadline after submit, 5s to 7d. Items not processed by then are counted `expired` and the batch ends `expired`.', example: '24h' });

/**
 * The batch status, with the lifecycle's sets as extensions so that clients (the dashboard) read them from here
 * instead of keeping a copy: `x-final` (nothing more happens), `x-unfinished` (in lifecycle order),
 * `x-cancellable`, and `x-completed` (the one good ending).
 */
const BatchStatusDoc = z.enum(batchStatuses).openapi({
  description:
    'pending -> processing -> completed | failed; pending or processing -> cancelling -> cancelled; pending or processing -> expired (the completion window passed)',
  'x-final': [...finalStatuses],
  'x-unfinished': [...unfinishedStatuses],
  'x-cancellable': [...cancellableStatuses],
  'x-completed': batchStatuses.find(isCompleted),
});

export const MemoryItemDoc = z
  .object({
    content: z.string().openapi({ example: 'The user prefers dark mode.' }),
    type: z.string().optional().openapi({ example: 'note' }),
    metadata: z.record(z.string(), z.unknown()).optional(),
    external_id: z.string().optional(),
  })
  .openapi('MemoryItem');

export const SubmitJsonDoc = z
  .object({
    memories: z.array(MemoryItemDoc),
    batch_id: BatchIdSchema.optional(),
    webhook_url: z.url().optional(),
    webhook_secret: z.string().optional().openapi({ description: 'A Standard Webhooks secret: whsec_ + base64 of 24 to 64 bytes' }),
    completion_window: CompletionWindowDoc.optional(),
    metadata: MetadataDoc.optional(),
  })
  .openapi('SubmitBatch');

/** The answer to `?validate_only=true`. */
export const DryRunDoc = z
  .object({
    valid: z.boolean(),
    total: z.number().int().openapi({ description: 'Memories read' }),
    errors: z
      .array(
        z.object({
          index: z.number().int().optional().openapi({ description: "The memory's 0-based index" }),
          line: z.number().int().optional().openapi({ description: 'The NDJSON line (1-based), for a line that is not JSON' }),
          path: z.string(),
          message: z.string(),
        }),
      )
      .openapi({ description: 'The first 100 problems, in body order; the first is the one a real submit answers with' }),
  })
  .openapi('DryRun');

const Counts = z.object({
  total: z.number().int(),
  processed: z.number().int().openapi({ description: 'succeeded + failed' }),
  succeeded: z.number().int(),
  failed: z.number().int(),
  expired: z.number().int().openapi({ description: 'Items without an outcome when the completion window passed; 0 unless the batch is expired' }),
});

export const BatchDoc = z
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
    progress_version: z.number().int().openapi({ description: 'Grows with every status change and item outcome: the SSE event id of this state' }),
    webhook_secret: z.string().optional().openapi({ description: 'Only in the submit answer, once, when the server generated it' }),
  })
  .openapi('Batch');

export const BatchPageDoc = z.object({ data: z.array(BatchDoc), next_cursor: z.string().nullable() }).openapi('BatchPage');

export const ResultDoc = z
  .object({
    index: z.number().int(),
    external_id: z.string().nullable(),
    status: z.enum([itemOutcome.succeeded, itemOutcome.failed]),
    memory_id: z.string().optional(),
    sink_id: z.string().optional().openapi({ description: 'With BATCHMEM_SINK=http: the id the target service gave the memory' }),
    error: z.string().optional(),
  })
  .openapi('ItemResult');

export const ResultLineDoc = z
  .object({
    index: z.number().int(),
    external_id: z.string().nullable(),
    outcome: z.enum(itemOutcomes),
    memory_id: z.string().nullable(),
    error: z.string().nullable(),
  })
  .openapi('ResultLine', { description: 'One line of results.ndjson or errors.ndjson' });

export const ResultPageDoc = z.object({ data: z.array(ResultDoc), next_cursor: z.string().nullable() }).openapi('ResultPage');

export const ErrorDoc = z.object({ index: z.number().int(), external_id: z.string().nullable(), error: z.string() }).openapi('ItemError');
export const ErrorPageDoc = z.object({ data: z.array(ErrorDoc), next_cursor: z.string().nullable() }).openapi('ErrorPage');

export const ProblemDoc = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem');
