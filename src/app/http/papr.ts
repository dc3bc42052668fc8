// Papr's dialect of the memory API at the HTTP edge: what its SDKs send, mapped onto batchmem's use cases.
// The shared submit route reads its batch-level fields through `envelopeOptions` (submit-body.ts); the routes only
// Papr clients call (the batch status, the single add) are here. See docs/api.md, "Papr clients".
import { z } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { isInvalidItemError } from '../../domain/invalid-items.ts';
import { batchResource, outcomesOf, type PaprItemError } from '../batch-resource.ts';
import type { Batch } from '../../domain/batch.ts';
import type { OrchestratedServices } from '../services.ts';
import { type AppError, AppFailure, validation } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { addMemory } from '../requests/add-memory.ts';
import { getBatch } from '../requests/read-batches.ts';
import { parseIJson } from './i-json.ts';
import { webhookSecretOf } from './submit-body.ts';
import { appErrorResponse, problemDocs } from './problem.ts';
import { guarded, router, security } from './router.ts';
import * as doc from './schemas.ts';

/** Item errors put on a single batch's resource; the rest are at /v1/batch/{id}/errors. */
const errorsOnResource = 100;

/** The batch resource with the first page of its item errors in Papr's `errors` shape. */
export async function batchResourceWithErrors(services: OrchestratedServices, batch: Batch) {
  const written = await outcomesOf(services, batch);
  if (batch.counts.failed === 0) return batchResource(batch, written);
  const errors = await services.batches.listErrors(batch.key, -1, errorsOnResource);
  const paprErrors: PaprItemError[] = errors.map((e) => ({ index: e.index, error: e.error, code: isInvalidItemError(e.error) ? 400 : 500 }));
  return batchResource(batch, written, paprErrors);
}

export interface PaprRouteDeps {
  services: OrchestratedServices;
  metrics: Metrics;
  maxJsonBodyBytes: number;
  /** How long a single add waits for its memory to be stored before answering 202. */
  singleAddWaitMs: number;
}

export function paprRoutes(deps: PaprRouteDeps) {
  const { services } = deps;
  const app = router();

  app.get('/v1/memory/batch/status/:batch_id', async (c) => {
    const id = c.req.param('batch_id');
    const found = await getBatch(services, c.get('tenant'), id);
    if (!found.ok) return appErrorResponse(c, found.error);
    return c.json(await batchResourceWithErrors(services, found.value), 200);
  });

  app.post(
    '/v1/memory',
    bodyLimit({
      maxSize: deps.maxJsonBodyBytes,
      onError: (c) => appErrorResponse(c, { kind: 'too_large', detail: `a single memory's body may be at most ${deps.maxJsonBodyBytes} bytes` }),
    }),
    async (c) => {
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json') return appErrorResponse(c, { kind: 'unsupported_format', detail: 'send the memory as application/json' });
      let item: unknown;
      try {
        const parsed = parseIJson(new TextDecoder('utf-8', { fatal: true }).decode(await c.req.arrayBuffer()));
        if (parsed.violation) {
          const path = parsed.violation.path.join('.');
          return appErrorResponse(c, validation(`${path || 'the body'} ${parsed.violation.message} (bodies must be I-JSON, RFC 7493)`, [{ path, message: parsed.violation.message }]));
        }
        item = parsed.value;
      } catch (error) {
        return appErrorResponse(c, validation(`the body is not valid UTF-8 JSON: ${(error as Error).message}`, [{ path: '', message: 'not JSON' }]));
      }
      if (item === null || typeof item !== 'object' || Array.isArray(item)) {
        return appErrorResponse(c, validation('the body must be one memory as a JSON object', [{ path: '', message: 'not an object' }]));
      }
      // Papr's single add takes its webhook as query parameters; its other flags (format, skip_background_processing)
      // have no effect here.
      // The secret may also come in the Webhook-Secret header, as on a batch submit.
      let query: { webhookUrl: string | undefined; webhookSecret: string | undefined };
      try {
        const webhookSecret = webhookSecretOf(c.req.header('webhook-secret'), nonEmpty(c.req.query('webhook_secret')), 'the webhook_secret query parameter');
        query = { webhookUrl: nonEmpty(c.req.query('webhook_url')), webhookSecret };
      } catch (error) {
        if (error instanceof AppFailure) return appErrorResponse(c, error.error);
        throw error;
      }
      const added = await addMemory(
        services,
        { tenant: c.get('tenant'), requestId: c.get('requestId'), item, options: () => query },
        deps.singleAddWaitMs,
      );
      if (!added.ok) return appErrorResponse(c, withSingleItemPaths(added.error));
      const { batch, created, replayed, memoryId, state } = added.value;
      if (created) deps.metrics.batchSubmitted({ rawBytes: batch.payload.rawBytes, storedBytes: batch.payload.storedBytes, memories: 1 });
      if (replayed) c.header('idempotent-replayed', 'true');
      c.header('location', `/v1/batch/${batch.id}`);
      if (state === 'refused') {
        return appErrorResponse(c, { kind: 'not_stored', detail: `the memory was not stored: ${added.value.reason}` });
      }
      const item0 = { memoryId, objectId: memoryId, createdAt: batch.createdAt, memoryChunkIds: [] as string[] };
      const stored = state === 'stored';
      return c.json(
        {
          code: stored ? 200 : 202,
          status: stored ? 'success' : 'accepted',
          data: [item0],
          error: null,
          details: null,
          batch_id: batch.id,
          message: stored ? `memory ${memoryId} is stored` : `memory ${memoryId} is accepted; follow batch ${batch.id} for its outcome`,
        },
        stored ? 200 : 202,
      );
    },
  );
  // Both are plain routes (the single add reads its body itself, to bound it); their contracts for OpenAPI:
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/memory/batch/status/{batch_id}',
    summary: "A batch's status (Papr's route; the same resource as GET /v1/batch/{id})",
    security,
    request: { params: z.object({ batch_id: z.string().openapi({ param: { name: 'batch_id', in: 'path' } }) }) },
    responses: {
      200: { description: 'The batch', content: { 'application/json': { schema: doc.BatchDoc } } },
      ...guarded,
      ...problemDocs('not_found'),
    },
  });
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/memory',
    summary: "Add one memory (Papr's single add): a batch of one, answered once stored",
    security,
    request: {
      query: z.object({
        webhook_url: z.string().optional(),
        webhook_secret: z.string().optional(),
        format: z.string().optional().openapi({ description: 'Accepted, no effect' }),
        skip_background_processing: z.string().optional().openapi({ description: 'Accepted, no effect' }),
        enable_holographic: z.string().optional().openapi({ description: 'Accepted, no effect' }),
        frequency_schema_id: z.string().optional().openapi({ description: 'Accepted, no effect' }),
      }),
      headers: z.object({ 'webhook-secret': z.string().optional() }),
      body: { content: { 'application/json': { schema: doc.MemoryItemDoc } } },
    },
    responses: {
      200: { description: 'Stored', content: { 'application/json': { schema: doc.PaprAddDoc } } },
      202: { description: 'Accepted, not stored within the wait: follow batch_id', content: { 'application/json': { schema: doc.PaprAddDoc } } },
      ...guarded,
      ...problemDocs('other_tenant', 'too_large', 'unsupported_format', 'not_stored'),
    },
  });
  return app;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** A single add's body is the memory itself: report `content`, not `memories.0.content`. */
function withSingleItemPaths(error: AppError): AppError {
  if (error.kind === 'validation') {
    const errors = error.errors.map((e) => ({ ...e, path: e.path.replace(/^memories\.0\.?/, '') }));
    return { ...error, detail: error.detail.replace(/memory 0 is invalid: /, 'the memory is invalid: ').replace(/memories\.0\.?/g, ''), errors };
  }
  if (error.kind === 'other_tenant') return { ...error, detail: error.detail.replace(/^memories\.0\./, '') };
  return error;
}
