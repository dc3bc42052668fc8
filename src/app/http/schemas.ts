// Schemas of the HTTP API, used to validate requests and to generate the OpenAPI document.
import { z } from '@hono/zod-openapi';
import { batchStatuses, cancellableStatuses, finalStatuses, isCompleted, unfinishedStatuses } from '../../domain/lifecycle.ts';
import { itemOutcomes } from '../../domain/progress.ts';

export const BatchIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: 'b_2f4c9a', description: 'The batch id' }),
});

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ example: 100 }),
  cursor: z.string().max(512).optional().openapi({ description: 'The next_cursor of the previous page' }),
});

export const ListQuery = PageQuery.extend({
  status: z.enum(batchStatuses).optional(),
});

/**
 * The batch status, with the lifecycle's sets as extensions so that clients (the dashboard) read them from here
 * instead of keeping a copy: `x-final` (nothing more happens), `x-unfinished` (in lifecycle order),
 * `x-cancellable`, and `x-completed` (the one good ending).
 */
const BatchStatusDoc = z.enum(batchStatuses).openapi({
  description: 'pending -> processing -> completed | failed; pending or processing -> cancelling -> cancelled',
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
    batch_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
    webhook_url: z.url().optional(),
    webhook_secret: z.string().optional().openapi({ description: 'A Standard Webhooks secret: whsec_ + base64 of 24 to 64 bytes' }),
  })
  .openapi('SubmitBatch');

const Counts = z.object({ total: z.number().int(), processed: z.number().int(), succeeded: z.number().int(), failed: z.number().int() });

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
    webhook_secret: z.string().optional().openapi({ description: 'Only in the submit answer, once, when the server generated it' }),
  })
  .openapi('Batch');

export const BatchPageDoc = z.object({ data: z.array(BatchDoc), next_cursor: z.string().nullable() }).openapi('BatchPage');

export const ResultDoc = z
  .object({
    index: z.number().int(),
    external_id: z.string().nullable(),
    status: z.enum(itemOutcomes),
    memory_id: z.string().optional(),
    error: z.string().optional(),
  })
  .openapi('ItemResult');

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
