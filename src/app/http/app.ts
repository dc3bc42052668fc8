// The HTTP API. Handlers stay thin: validate at the edge, call one use case, map its result to a response.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import type { Context as HonoContext } from 'hono';
import { requestId } from 'hono/request-id';
import { batchIdPattern, batchMetadataIssues } from '../../domain/batch.ts';
import { InvalidCursorError } from '../../ports/batch-repository.ts';
import type { ApiKeyring } from '../api-keys.ts';
import { batchResource } from '../batch-resource.ts';
import type { OrchestratedServices } from '../services.ts';
import { type AppError, AppFailure, notFound, validation } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { cancelBatch } from '../requests/cancel-batch.ts';
import { deleteBatch } from '../requests/delete-batch.ts';
import { getBatch, listBatches, listErrors, listResults } from '../requests/read-batches.ts';
import {
  type DryRunReport,
  dryRunMaxErrors,
  findExisting,
  type SubmitOptions,
  submitBatch,
  validateBatch,
} from '../requests/submit-batch.ts';
import { type AuthEnv, requireApiKey } from './auth.ts';
import { jsonBatch, ndjsonItems } from './body.ts';
import { batchResourceWithErrors, envelopeOptions, paprRoutes } from './papr.ts';
import { appErrorResponse, problemResponse } from './problem.ts';
import * as doc from './schemas.ts';
import { createEventsApp, type EventStreamTiming } from './events.ts';
import { createResultFilesApp } from './result-files.ts';
import { createUiApp } from './ui.ts';

export interface HttpDeps {
  ctx: OrchestratedServices;
  keys: ApiKeyring;
  logger: Logger;
  metrics: Metrics;
  maxJsonBodyBytes: number;
  /** Heartbeat and retry hint of the event stream (defaults: 15 s, 2 s). */
  eventStream?: EventStreamTiming;
  /** Extra readiness checks beyond the ports (e.g. Temporal's connection). */
  ready?: () => Promise<void>;
  /** How long `POST /v1/memory` waits for its memory to be stored before answering 202 (default 10 s). */
  singleAddWaitMs?: number;
}

const problemResponses = {
  400: { description: 'Invalid request', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
  401: { description: 'Missing or unknown API key', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
  404: { description: 'No such batch for this tenant', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
};

const security = [{ bearer: [] }];

const routes = {
  get: createRoute({
    method: 'get', path: '/v1/batch/{id}', security, request: { params: doc.BatchIdParam },
    responses: { 200: { description: 'The batch', content: { 'application/json': { schema: doc.BatchDoc } } }, ...problemResponses },
  }),
  list: createRoute({
    method: 'get', path: '/v1/batch', security, request: { query: doc.ListQuery },
    responses: { 200: { description: 'Batches, newest first', content: { 'application/json': { schema: doc.BatchPageDoc } } }, ...problemResponses },
  }),
  delete: createRoute({
    method: 'delete', path: '/v1/batch/{id}', security, request: { params: doc.BatchIdParam },
    summary: "Delete a final batch: its payload and record go, the memories it stored stay in the memory store",
    responses: {
      204: { description: 'Deleted' },
      409: { description: 'Not final yet (cancel it first, or wait)', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
      ...problemResponses,
    },
  }),
  cancel: createRoute({
    method: 'post', path: '/v1/batch/{id}/cancel', security, request: { params: doc.BatchIdParam },
    responses: {
      202: { description: 'Cancelling', content: { 'application/json': { schema: doc.BatchDoc } } },
      409: { description: 'Already final', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
      ...problemResponses,
    },
  }),
  results: createRoute({
    method: 'get', path: '/v1/batch/{id}/results', security, request: { params: doc.BatchIdParam, query: doc.PageQuery },
    responses: { 200: { description: 'Per-item results by index', content: { 'application/json': { schema: doc.ResultPageDoc } } }, ...problemResponses },
  }),
  errors: createRoute({
    method: 'get', path: '/v1/batch/{id}/errors', security, request: { params: doc.BatchIdParam, query: doc.PageQuery },
    responses: { 200: { description: 'Per-item errors by index', content: { 'application/json': { schema: doc.ErrorPageDoc } } }, ...problemResponses },
  }),
};

const ndjsonTypes = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl']);

function mediaType(header: string | undefined): { type: string; charset?: string | undefined } {
  const [type = '', ...params] = (header ?? '').split(';').map((part) => part.trim().toLowerCase());
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/"/g, '');
  return { type, charset };
}

const idempotencyKeyPattern = /^[\x21-\x7e]{1,255}$/;

export function createHttpApp(deps: HttpDeps) {
  const { ctx, logger, metrics } = deps;
  const app = new OpenAPIHono<AuthEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const errors = result.error.issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));
      return problemResponse(c, 400, 'Invalid request', errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
    },
  });

  app.use(requestId());
  app.use(async (c, next) => {
    const startedAt = performance.now();
    await next();
    const route = c.req.routePath || 'unmatched';
    const durationMs = performance.now() - startedAt;
    metrics.httpRequest(c.req.method, route, c.res.status, durationMs);
    // Method, route pattern, status and timing only: headers and bodies (keys, secrets) are never logged.
    logger.info({ requestId: c.get('requestId'), method: c.req.method, route, status: c.res.status, ms: Math.round(durationMs) }, 'request');
  });

  app.onError((error, c) => {
    if (error instanceof AppFailure) {
      if (error.cause !== undefined) {
        const cause = error.cause as Error;
        logger.warn({ requestId: c.get('requestId'), err: { name: cause.name, message: cause.message } }, error.message);
      }
      return appErrorResponse(c, error.error);
    }
    if (error instanceof InvalidCursorError) return appErrorResponse(c, validation('cursor is not valid', [{ path: 'cursor', message: 'must come from next_cursor' }]));
    logger.error({ requestId: c.get('requestId'), err: { name: error.name, message: error.message, stack: error.stack } }, 'unhandled error');
    return problemResponse(c, 500, 'Internal error', `the request failed; quote request id ${c.get('requestId')}`);
  });
  app.notFound((c) => problemResponse(c, 404, 'Not found', `no route for ${c.req.method} ${c.req.path}`));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const checks: Record<string, () => Promise<void>> = {
      batches: () => ctx.batches.check(),
      payloads: () => ctx.payloads.check(),
      sink: () => ctx.sink.check(),
      orchestrator: () => ctx.orchestrator.check(),
      ...(deps.ready ? { extra: deps.ready } : {}),
    };
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await check();
          return [name, 'ok'] as const;
        } catch (error) {
          return [name, (error as Error).message] as const;
        }
      }),
    );
    const failing = results.filter(([, state]) => state !== 'ok');
    if (failing.length === 0) return c.json({ status: 'ready', checks: Object.fromEntries(results) });
    return problemResponse(c, 503, 'Service unavailable', failing.map(([name, state]) => `${name}: ${state}`).join('; '));
  });
  app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));

  app.route('/ui', createUiApp());
  app.use('/v1/*', requireApiKey(deps.keys));
  app.route('/', paprRoutes({ ctx, metrics, maxJsonBodyBytes: deps.maxJsonBodyBytes, singleAddWaitMs: deps.singleAddWaitMs ?? 10_000 }));

  const withBatchId = (c: HonoContext<AuthEnv>, id: string) => {
    if (!batchIdPattern.test(id)) throw new AppFailure(notFound(`batch ${id.slice(0, 64)}`));
    return c.get('tenant');
  };

  // Submit reads its body as a stream, so it is a plain route; its contract is documented below for OpenAPI.
  app.post('/v1/memory/batch', async (c) => {
    const tenant = c.get('tenant');
    const validateOnly = c.req.query('validate_only');
    if (validateOnly !== undefined && validateOnly !== 'true' && validateOnly !== 'false') {
      return appErrorResponse(c, validation('validate_only must be true or false', [{ path: 'validate_only', message: 'must be true or false' }]));
    }
    const dryRun = validateOnly === 'true';
    // A dry run reports what a real submit would refuse as invalid (400) in its answer; every other refusal is the same.
    const refuse = (error: AppError) =>
      dryRun && error.kind === 'validation'
        ? c.json(dryRunReport(0, error), 200)
        : appErrorResponse(c, error);
    const { type, charset } = mediaType(c.req.header('content-type'));
    const isJson = type === 'application/json';
    if (!isJson && !ndjsonTypes.has(type)) {
      return problemResponse(c, 415, 'Unsupported media type', 'send application/json or application/x-ndjson');
    }
    if (charset && charset !== 'utf-8' && charset !== 'utf8') {
      return problemResponse(c, 415, 'Unsupported media type', `charset ${charset} is not supported; use utf-8`);
    }
    const idempotencyKey = c.req.header('idempotency-key');
    if (idempotencyKey !== undefined && !idempotencyKeyPattern.test(idempotencyKey)) {
      return refuse(validation('Idempotency-Key must be 1 to 255 visible ASCII characters', [{ path: 'Idempotency-Key', message: 'invalid' }]));
    }
    const declaredLength = Number(c.req.header('content-length') ?? '0');
    if (isJson && declaredLength > deps.maxJsonBodyBytes) {
      return problemResponse(c, 413, 'Payload too large', `a JSON body may be at most ${deps.maxJsonBodyBytes} bytes; send NDJSON for larger batches`);
    }
    const body = c.req.raw.body;
    if (!body) return refuse(validation('the body is empty', [{ path: '', message: 'empty' }]));

    const early: SubmitOptions = { idempotencyKey };
    let items: AsyncIterable<unknown>;
    let options: () => SubmitOptions;
    if (isJson) {
      const parsed = jsonBatch(body, deps.maxJsonBodyBytes);
      items = parsed.items;
      options = () => ({ ...early, ...envelopeOptions(parsed.envelope, ctx.settings.memoryLimits) });
    } else {
      const query = {
        batchId: c.req.query('batch_id'),
        webhookUrl: c.req.query('webhook_url'),
        webhookSecret: c.req.header('webhook-secret'),
        completionWindow: c.req.query('completion_window'),
        metadata: bracketParams(new URL(c.req.url).searchParams, 'metadata'),
      };
      try {
        checkBatchId(query.batchId);
      } catch (error) {
        if (error instanceof AppFailure) return refuse(error.error);
        throw error;
      }
      Object.assign(early, query);
      items = ndjsonItems(body);
      options = () => early;
    }
    if (dryRun) {
      const report = await validateBatch(ctx, { items, options });
      if (!report.ok) return appErrorResponse(c, report.error);
      return c.json(report.value, 200);
    }
    const existing = await findExisting(ctx, tenant, early);
    if (existing) {
      await body.cancel().catch(() => undefined);
      c.header('idempotent-replayed', 'true');
      return c.json(batchResource(existing), 200);
    }
    const result = await submitBatch(ctx, { tenant, requestId: c.get('requestId'), items, options });
    if (!result.ok) return appErrorResponse(c, result.error);
    const { batch, created, replayed, generatedSecret } = result.value;
    if (replayed) c.header('idempotent-replayed', 'true');
    if (created) metrics.batchSubmitted(batch.payload.storedBytes ? batch.payload.rawBytes / batch.payload.storedBytes : 0, batch.counts.total);
    const resource = generatedSecret ? { ...batchResource(batch), webhook_secret: generatedSecret } : batchResource(batch);
    c.header('location', `/v1/batch/${batch.id}`);
    return c.json(resource, created ? 202 : 200);
  });

  app.openapi(routes.get, async (c) => {
    const { id } = c.req.valid('param');
    const result = await getBatch(ctx, withBatchId(c, id), id);
    if (!result.ok) return appErrorResponse(c, result.error) as never;
    return c.json(await batchResourceWithErrors(ctx, result.value), 200);
  });

  app.openapi(routes.list, async (c) => {
    const { metadata: _documentedOnly, ...query } = c.req.valid('query');
    const metadata = bracketParams(new URL(c.req.url).searchParams, 'metadata');
    if (metadata) {
      const issues = batchMetadataIssues(metadata).map((issue) => ({ ...issue, path: issue.path.replace(/^metadata\.(.*)$/, 'metadata[$1]') }));
      if (issues.length > 0) return appErrorResponse(c, validation(`metadata filter is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues)) as never;
    }
    const page = await listBatches(ctx, c.get('tenant'), { ...query, metadata });
    return c.json({ data: page.items.map((batch) => batchResource(batch)), next_cursor: page.nextCursor }, 200);
  });

  app.openapi(routes.delete, async (c) => {
    const { id } = c.req.valid('param');
    const result = await deleteBatch(ctx, withBatchId(c, id), id);
    if (!result.ok) return appErrorResponse(c, result.error) as never;
    return c.body(null, 204) as never;
  });

  app.openapi(routes.cancel, async (c) => {
    const { id } = c.req.valid('param');
    const result = await cancelBatch(ctx, withBatchId(c, id), id);
    if (!result.ok) return appErrorResponse(c, result.error) as never;
    return c.json(batchResource(result.value), 202);
  });

  app.openapi(routes.results, async (c) => {
    const { id } = c.req.valid('param');
    const result = await listResults(ctx, withBatchId(c, id), id, c.req.valid('query'));
    if (!result.ok) return appErrorResponse(c, result.error) as never;
    return c.json({ data: result.value.items, next_cursor: result.value.nextCursor }, 200);
  });

  app.openapi(routes.errors, async (c) => {
    const { id } = c.req.valid('param');
    const result = await listErrors(ctx, withBatchId(c, id), id, c.req.valid('query'));
    if (!result.ok) return appErrorResponse(c, result.error) as never;
    return c.json({ data: result.value.items, next_cursor: result.value.nextCursor }, 200);
  });

  app.route('/', createEventsApp(ctx, deps.eventStream));
  app.route('/', createResultFilesApp(ctx));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
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
        validate_only: z.enum(['true', 'false']).optional().openapi({ description: 'true: check the whole body and answer with a DryRun; nothing is stored' }),
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
      ...problemResponses,
      413: { description: 'Too many memories or too large a body', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
      415: { description: 'Not JSON or NDJSON', content: { 'application/problem+json': { schema: doc.ProblemDoc } } },
    },
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'batchmem', version: '0.1.0', description: 'Durable, exactly-once ingestion of large batches of AI memories.' },
  });
  app.get('/docs', swaggerUI({ url: '/openapi.json' }));
  return app;
}

function checkBatchId(batchId: unknown): void {
  if (batchId === undefined) return;
  if (typeof batchId !== 'string' || !batchIdPattern.test(batchId)) {
    throw new AppFailure(validation('batch_id must match [A-Za-z0-9_-]{1,64}', [{ path: 'batch_id', message: 'must match [A-Za-z0-9_-]{1,64}' }]));
  }
}

/** A dry run's answer for a request refused before its body was read. */
function dryRunReport(total: number, error: AppError): DryRunReport {
  const errors = error.kind === 'validation' && error.errors.length > 0 ? error.errors : [{ path: '', message: error.detail }];
  return { valid: false, total, errors: errors.slice(0, dryRunMaxErrors) };
}

/**
 * `name[key]=value` query parameters as an object (`metadata[source]=crm` -> {source: "crm"}), or undefined when
 * there are none. A repeated key keeps its last value; keys are checked by the caller.
 */
export function bracketParams(params: URLSearchParams, name: string): Record<string, string> | undefined {
  const prefix = `${name}[`;
  let found: Record<string, string> | undefined;
  for (const [param, value] of params) {
    if (!param.startsWith(prefix) || !param.endsWith(']')) continue;
    found ??= {};
    Object.defineProperty(found, param.slice(prefix.length, -1), { value, enumerable: true, configurable: true, writable: true });
  }
  return found;
}
