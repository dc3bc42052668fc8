// Schemas of the HTTP API, used to validate requests and to generate the OpenAPI document.
import { z } from '@hono/zod-openapi';
import { batchIdPattern, batchIdRule } from '../../domain/batch.ts';
import { batchStatuses } from '../../domain/lifecycle.ts';
import { failureLimitBounds } from '../../domain/failure-limits.ts';
import { invalidItemsModes } from '../../domain/invalid-items.ts';
import { memoryAttributesSchema, memoryItemSchema, onExistingModes } from '../../domain/memory.ts';
import { itemOutcome, itemOutcomes, writeOutcomes } from '../../domain/progress.ts';
import { batchResourceSchema, MetadataDoc } from '../batch-resource.ts';

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

const CompletionWindowDoc = z
  .string()
  .regex(/^[1-9][0-9]{0,6}(s|m|h|d)$/)
  .openapi({ description: 'Deadline after submit, 5s to 7d. Items not processed by then are counted `expired` and the batch ends `expired`.', example: '24h' });

const attributes = memoryAttributesSchema().shape;
// A JSON-object field's type comes from its check's `meta` (domain/memory.ts), which hides the null `nullable` adds.
const objectOrNull: { type: ('object' | 'null')[] } = { type: ['object', 'null'] };
const item = memoryItemSchema().shape;

/**
 * Papr's memory fields (docs/api.md, "Papr clients"): kept with the memory, returned in results, no effect. Each is
 * the domain's own schema for the field (domain/memory.ts), annotated, and also takes null: clients generated from
 * Papr's spec send null for an unset field, which the edge reads as absent (`withoutNulls`).
 */
const paprMemoryFields = {
  context: attributes.context.nullable().openapi({ description: 'Papr: conversation history for this memory' }),
  relationships_json: attributes.relationships_json
    .nullable()
    .openapi({ description: 'Papr: relationships to other memories, each an object with a relation_type' }),
  external_user_id: attributes.external_user_id.nullable().openapi({ description: "Papr: your application's user id (an attribute, not a tenant)" }),
  user_id: attributes.user_id.nullable().openapi({ description: 'Papr: an internal user id (an attribute, not a tenant)' }),
  namespace_id: attributes.namespace_id.nullable().openapi({ description: "The API key's namespace, or absent; another is 403" }),
  organization_id: attributes.organization_id.nullable().openapi({ description: "The API key's organization, or absent; another is 403" }),
  graph_generation: attributes.graph_generation.nullable().openapi({ ...objectOrNull, description: 'Papr: graph generation settings (stored as sent)' }),
  link_to: attributes.link_to.nullable().openapi({ description: 'Papr: link shorthand (stored as sent)' }),
  memory_policy: attributes.memory_policy.nullable().openapi({ ...objectOrNull, description: 'Papr: memory policy (stored as sent)' }),
  policy: attributes.policy.nullable().openapi({ ...objectOrNull, description: 'Papr: ingestion policy (stored as sent)' }),
};

/** The memory item: the domain's schema (`memoryItemSchema`, default limits) with the annotations above. */
export const MemoryItemDoc = memoryItemSchema()
  .extend({
    ...paprMemoryFields,
    content: item.content.openapi({ example: 'The user prefers dark mode.' }),
    type: item.type.openapi({ example: 'note' }),
    external_id: item.external_id.openapi({
      description: "The client's id for the memory, unique in a batch: a tenant's memory with this id is updated in place (upsert)",
    }),
  })
  .openapi('MemoryItem');

export const SubmitJsonDoc = z
  .object({
    memories: z.array(MemoryItemDoc),
    batch_id: BatchIdSchema.optional(),
    webhook_url: z.url().optional(),
    webhook_secret: z.string().optional().openapi({ description: 'whsec_ + base64 of 24 to 64 bytes (Standard Webhooks), or a plain secret of 16 to 256 printable characters used as the raw key' }),
    completion_window: CompletionWindowDoc.optional(),
    metadata: MetadataDoc.optional(),
    ...paprMemoryFields,
    batch_size: z.number().int().min(1).max(1000).nullish().openapi({ description: 'Papr: a concurrency hint; checked, not used' }),
    on_existing: z.enum(onExistingModes).optional().openapi({
      description: 'For a memory whose external_id the tenant already stored: update it when it changed (default) or leave it as it is',
    }),
    max_failed_items: z.number().int().min(0).max(failureLimitBounds.maxItems).optional().openapi({
      description: 'Failed memories tolerated: once more fail, no new segment starts and the batch ends failed with the reason',
    }),
    max_failed_percent: z.number().min(0).max(failureLimitBounds.maxPercent).optional().openapi({
      description: 'Failed memories tolerated as a percentage of the total (at most 4 decimals); exceeded, the batch stops and ends failed',
    }),
    invalid_items: z.enum(invalidItemsModes).optional().openapi({
      description:
        'reject (default): one invalid memory refuses the batch. record: each invalid memory becomes a failed item (its index, external_id when readable, field paths) and the others are processed',
    }),
  })
  .openapi('SubmitBatch', { description: "The Papr memory fields given here are defaults for every memory of the batch; a memory's own value wins. null is absent." });

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

export const BatchDoc = batchResourceSchema;

export const BatchPageDoc = z.object({ data: z.array(BatchDoc), next_cursor: z.string().nullable() }).openapi('BatchPage');

export const ResultDoc = z
  .object({
    index: z.number().int(),
    external_id: z.string().nullable(),
    status: z.enum([itemOutcome.succeeded, itemOutcome.failed]),
    outcome: z.enum(writeOutcomes).optional().openapi({ description: 'For a succeeded item: what its write did to the memory' }),
    memory_id: z.string().optional(),
    version: z.number().int().optional().openapi({ description: "The memory's version now (1 when created, one more per update)" }),
    sink_id: z.string().optional().openapi({ description: 'With BATCHMEM_SINK=http: the id the target service gave the memory' }),
    error: z.string().optional(),
    ...paprMemoryFields,
  })
  .openapi('ItemResult', { description: 'A stored memory also carries the Papr fields it was stored with, under their own names' });

/** The answer of Papr's single add, POST /v1/memory. */
export const PaprAddDoc = z
  .object({
    code: z.number().int().openapi({ description: '200 once stored, 202 when still on its way' }),
    status: z.enum(['success', 'accepted']),
    data: z.array(z.object({ memoryId: z.string(), objectId: z.string(), createdAt: z.string(), memoryChunkIds: z.array(z.string()) })),
    error: z.null(),
    details: z.null(),
    batch_id: z.string(),
    message: z.string(),
  })
  .openapi('PaprAddMemory');

export const ResultLineDoc = z
  .object({
    index: z.number().int(),
    external_id: z.string().nullable(),
    outcome: z.enum(itemOutcomes),
    memory_id: z.string().nullable(),
    memory_outcome: z.enum(writeOutcomes).nullable().openapi({ description: 'For a succeeded item: created, updated or unchanged' }),
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
