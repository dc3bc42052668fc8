// Submitting a batch: POST /v1/memory/batch, JSON or NDJSON, read as a stream so memory stays flat whatever the
// size. A plain route (its body is never parsed whole); its contract is registered for OpenAPI by hand below.
import { z } from '@hono/zod-openapi';
import { failureLimitBounds } from '../../domain/failure-limits.ts';
import { invalidItemsModes } from '../../domain/invalid-items.ts';
import { onExistingModes } from '../../domain/memory.ts';
import { batchResource, outcomesOf } from '../batch-resource.ts';
import { type AppError, validation } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { type DryRunReport, dryRunMaxErrors, findExisting, storeBatch, type SubmitOptions } from '../requests/submit-batch.ts';
import type { OrchestratedServices } from '../services.ts';
import { maxItemLineBytes } from './body.ts';
import { type SubmitBodyReader, type SubmitBodySpec } from './submit-body.ts';
import { appErrorResponse, problemDocs } from './problem.ts';
import { bracketParams, guarded, router, security } from './router.ts';
import * as doc from './schemas.ts';

export interface SubmitRouteDeps {
  services: OrchestratedServices;
  metrics: Metrics;
  maxJsonBodyBytes: number;
  /** Decoded bytes an NDJSON body may have in all (blank lines included). */
  maxNdjsonBodyBytes: number;
  /** Where bodies are read and checked: this thread, or the upload thread. */
  reader: SubmitBodyReader;
}

const ndjsonTypes = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl']);

function mediaType(header: string | undefined): { type: string; charset?: string | undefined } {
  const [type = '', ...params] = (header ?? '').split(';').map((part) => part.trim().toLowerCase());
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/"/g, '');
  return { type, charset };
}

/** The query options the NDJSON route reads (a JSON body gives them in the body). */
const ndjsonQueryOptions = new Set([
  'batch_id', 'webhook_url', 'completion_window', 'metadata', 'on_existing', 'max_failed_items', 'max_failed_percent', 'invalid_items',
]);

const idempotencyKeyPattern = /^[\x21-\x7e]{1,255}$/;

export function submitRoutes(deps: SubmitRouteDeps) {
  const { services, metrics } = deps;
  const app = router();

  app.post('/v1/memory/batch', async (c) => {
    const tenant = c.get('tenant');
    const validateOnly = c.req.query('validate_only');
    if (validateOnly !== undefined && validateOnly !== 'true' && validateOnly !== 'false') {
      return appErrorResponse(c, validation('validate_only must be true or false', [{ path: 'validate_only', message: 'must be true or false' }]));
    }
    const dryRun = validateOnly === 'true';
    // A dry run reports what a real submit would refuse as invalid (400) in its answer; every other refusal is the same.
    const refuse = (error: AppError) => (dryRun && error.kind === 'validation' ? c.json(dryRunReport(0, error), 200) : appErrorResponse(c, error));
    const { type, charset } = mediaType(c.req.header('content-type'));
    const isJson = type === 'application/json';
    if (!isJson && !ndjsonTypes.has(type)) {
      return appErrorResponse(c, { kind: 'unsupported_format', detail: 'send application/json or application/x-ndjson' });
    }
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      return appErrorResponse(c, { kind: 'unsupported_format', detail: `charset ${charset} is not supported; use utf-8` });
    }
    const idempotencyKey = c.req.header('idempotency-key');
    if (idempotencyKey !== undefined && !idempotencyKeyPattern.test(idempotencyKey)) {
      return refuse(validation('Idempotency-Key must be 1 to 255 visible ASCII characters', [{ path: 'Idempotency-Key', message: 'invalid' }]));
    }
    const declaredLength = Number(c.req.header('content-length') ?? '0');
    if (!isJson && declaredLength > deps.maxNdjsonBodyBytes && !c.req.header('content-encoding')) {
      return appErrorResponse(c, { kind: 'too_large', detail: `an NDJSON body may be at most ${deps.maxNdjsonBodyBytes} bytes` });
    }
    if (isJson && declaredLength > deps.maxJsonBodyBytes) {
      return appErrorResponse(c, {
        kind: 'too_large',
        detail: `a JSON body may be at most ${deps.maxJsonBodyBytes} bytes; send NDJSON for larger batches`,
      });
    }
    const body = c.req.raw.body;
    if (!body) return refuse(validation('the body is empty', [{ path: '', message: 'empty' }]));

    const early: SubmitOptions = { idempotencyKey };
    const spec: SubmitBodySpec = {
      format: isJson ? 'json' : 'ndjson',
      tenant,
      maxBytes: isJson ? deps.maxJsonBodyBytes : deps.maxNdjsonBodyBytes,
      maxLineBytes: maxItemLineBytes(services.settings.memoryLimits),
      memoryLimits: services.settings.memoryLimits,
      early,
    };
    if (isJson) {
      // A JSON body carries its batch options itself; the same options in the query would be ignored or race the body's.
      const searchParams = new URL(c.req.url).searchParams;
      const queryOptions = [...new Set([...searchParams.keys()].filter((name) => ndjsonQueryOptions.has(name.replace(/\[.*$/, ''))))];
      if (queryOptions.length > 0) {
        const names = queryOptions.slice(0, 10);
        return refuse(
          validation(
            `query parameter${names.length > 1 ? 's' : ''} ${names.map((n) => JSON.stringify(n.slice(0, 64))).join(', ')} only apply to an NDJSON body; give batch options in the JSON body`,
            names.map((name) => ({ path: name.slice(0, 64), message: 'is an NDJSON option; give it in the JSON body' })),
          ),
        );
      }
      spec.headerSecret = c.req.header('webhook-secret');
    } else {
      const query = {
        batchId: c.req.query('batch_id'),
        webhookUrl: c.req.query('webhook_url'),
        webhookSecret: c.req.header('webhook-secret'),
        completionWindow: c.req.query('completion_window'),
        metadata: bracketParams(new URL(c.req.url).searchParams, 'metadata'),
        onExisting: c.req.query('on_existing'),
        maxFailedItems: numberParam(c.req.query('max_failed_items')),
        maxFailedPercent: numberParam(c.req.query('max_failed_percent')),
        invalidItems: c.req.query('invalid_items'),
      };
      if (!doc.BatchIdSchema.optional().safeParse(query.batchId).success) {
        return refuse(validation(`batch_id ${doc.batchIdRule}`, [{ path: 'batch_id', message: doc.batchIdRule }]));
      }
      Object.assign(early, query);
    }
    if (dryRun) {
      const report = await deps.reader.validate(body, spec);
      if (!report.ok) return appErrorResponse(c, report.error);
      return c.json(report.value, 200);
    }
    const found = await findExisting(services, tenant, early);
    if (!found.ok) {
      await body.cancel().catch(() => undefined);
      return appErrorResponse(c, found.error);
    }
    const existing = found.value;
    if (existing) {
      await body.cancel().catch(() => undefined);
      c.header('idempotent-replayed', 'true');
      return c.json(batchResource(existing, await outcomesOf(services, existing)), 200);
    }
    const request = { tenant, requestId: c.get('requestId'), ...(isJson ? {} : { upFront: early }) };
    const result = await storeBatch(services, request, (mode) => deps.reader.segments(body, spec, mode));
    if (!result.ok) return appErrorResponse(c, result.error);
    const { batch, created, replayed, generatedSecret } = result.value;
    if (replayed) c.header('idempotent-replayed', 'true');
    if (created) metrics.batchSubmitted({ rawBytes: batch.payload.rawBytes, storedBytes: batch.payload.storedBytes, memories: batch.counts.total });
    const written = await outcomesOf(services, batch);
    const resource = generatedSecret ? { ...batchResource(batch, written), webhook_secret: generatedSecret } : batchResource(batch, written);
    c.header('location', `/v1/batch/${batch.id}`);
    return c.json(resource, created ? 202 : 200);
  });

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/memory/batch',
    summary: 'Submit a batch of memories (JSON or NDJSON, streamed)',
    security,
    request: {
      query: z.object({
        batch_id: z.string().optional(),
        webhook_url: z.string().optional(),
        completion_window: z.string().optional().openapi({ description: 'NDJSON: the completion window, e.g. 24h (JSON: in the body)' }),
        metadata: z.record(z.string(), z.string()).optional().openapi({
          param: { name: 'metadata', in: 'query', style: 'deepObject', explode: true },
          description: 'NDJSON: metadata[key]=value pairs (JSON: in the body)',
        }),
        on_existing: z.enum(onExistingModes).optional().openapi({
          description: 'NDJSON: for a memory whose external_id the tenant already stored, update it (default) or skip it (JSON: in the body)',
        }),
        max_failed_items: z.string().optional().openapi({
          description: `NDJSON: failed memories tolerated; one more stops the batch, which ends failed (0 to ${failureLimitBounds.maxItems}; JSON: in the body)`,
        }),
        max_failed_percent: z.string().optional().openapi({
          description: 'NDJSON: failed memories tolerated as a percentage of the total, 0 to 100 (JSON: in the body)',
        }),
        invalid_items: z.enum(invalidItemsModes).optional().openapi({
          description:
            'NDJSON: reject (default) refuses the batch for one invalid item; record makes each invalid line a failed item (line, external_id, field paths) and starts processing with the first stored segment while the body streams (JSON: in the body)',
        }),
        validate_only: z.enum(['true', 'false']).optional().openapi({ description: 'true: check the whole body and answer with a DryRun; nothing is stored' }),
        // Flags Papr's SDKs send on a batch add: accepted so those clients work, with no effect here.
        skip_background_processing: z.string().optional().openapi({ description: "Papr's flag: accepted, no effect" }),
        enable_holographic: z.string().optional().openapi({ description: "Papr's flag: accepted, no effect" }),
        frequency_schema_id: z.string().optional().openapi({ description: "Papr's flag: accepted, no effect" }),
      }),
      headers: z.object({ 'idempotency-key': z.string().optional(), 'webhook-secret': z.string().optional() }),
      body: {
        content: {
          'application/json': { schema: doc.SubmitJsonDoc },
          'application/x-ndjson': { schema: z.string().openapi({ description: 'One MemoryItem as JSON per line' }) },
        },
      },
    },
    responses: {
      202: { description: 'Accepted: stored and started', content: { 'application/json': { schema: doc.BatchDoc } } },
      200: {
        description: 'A repeated submission: the existing batch; with validate_only=true, the DryRun report',
        content: { 'application/json': { schema: z.union([doc.BatchDoc, doc.DryRunDoc]) } },
      },
      ...guarded,
      ...problemDocs('too_large', 'unsupported_format', 'idempotency_key_reused', 'backend_unavailable'),
    },
  });
  return app;
}

/**
 * A numeric query parameter: its number when it is written as a plain decimal, else the text as sent, so that the
 * submit use case names it in its refusal ("must be a whole number ...") as it does for a JSON body's wrong type.
 */
function numberParam(value: string | undefined): unknown {
  if (value === undefined) return undefined;
  return /^-?[0-9]{1,16}(\.[0-9]{1,16})?$/.test(value) ? Number(value) : value;
}

/** A dry run's answer for a request refused before its body was read. */
function dryRunReport(total: number, error: AppError): DryRunReport {
  const errors = error.kind === 'validation' && error.errors.length > 0 ? error.errors : [{ path: '', message: error.detail }];
  return { valid: false, total, errors: errors.slice(0, dryRunMaxErrors) };
}
