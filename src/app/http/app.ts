// The HTTP API, put together: request ids and access logs, the one error mapping, operations endpoints, the
// dashboard, and one router per resource (batches.ts, submit.ts, events.ts, result-files.ts, papr.ts) joined with `app.route`. Handlers stay
// thin: validate at the edge, call one use case, map its result or its typed error (problem.ts) to a response.
import type { IncomingMessage } from 'node:http';
import { swaggerUI } from '@hono/swagger-ui';
import { requestId } from 'hono/request-id';
import type { ApiKeyring } from '../api-keys.ts';
import type { OrchestratedServices } from '../services.ts';
import { AppFailure } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { withServerSpan } from '../tracing.ts';
import { requireApiKey } from './auth.ts';
import { batchRoutes } from './batches.ts';
import { createEventsApp, type EventStreamTiming } from './events.ts';
import { createResultFilesApp } from './result-files.ts';
import { paprRoutes } from './papr.ts';
import { appErrorResponse, problemResponse } from './problem.ts';
import { checkRequest } from './request-checks.ts';
import { router } from './router.ts';
import { submitRoutes } from './submit.ts';
import { inlineBodyReader, type SubmitBodyReader } from './submit-body.ts';
import { answerEndsConnection } from './unread-body.ts';
import { createUiApp } from './ui.ts';

export interface HttpDeps {
  services: OrchestratedServices;
  keys: ApiKeyring;
  logger: Logger;
  metrics: Metrics;
  maxJsonBodyBytes: number;
  /** NDJSON submit limit in decoded bytes (default 8 GiB; the item count is bounded apart). */
  maxNdjsonBodyBytes?: number;
  /** Heartbeat and retry hint of the event stream (defaults: 15 s, 2 s). */
  eventStream?: EventStreamTiming;
  /** Extra readiness checks beyond the ports (e.g. Temporal's connection). */
  ready?: () => Promise<void>;
  /** How long `POST /v1/memory` waits for its memory to be stored before answering 202 (default 10 s). */
  singleAddWaitMs?: number;
  /** Where submit bodies are read and checked (default: on this thread; `serve` uses the upload thread). */
  bodyReader?: SubmitBodyReader;
  /** Aborted when the server stops: open event streams end at once (events.ts). */
  shutdown?: AbortSignal;
}

export const defaultMaxNdjsonBodyBytes = 8 * 1024 ** 3;

export function createHttpApp(deps: HttpDeps) {
  const { services, logger, metrics } = deps;
  const app = router();

  app.use(requestId());
  // An answer given before the body was all received says `Connection: close` when the rest is too much to discard
  // (unread-body.ts, which also closes such a connection only after the client could read the answer).
  app.use(async (c, next) => {
    await next();
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (incoming && answerEndsConnection(incoming)) c.res.headers.set('connection', 'close');
  });
  // Outermost after the request id: the request's log line and every span of its handling fall inside this span.
  app.use((c, next) => withServerSpan(c.req.method, c.req.raw.headers, next, () => ({ route: c.req.routePath || 'unmatched', status: c.res.status })));
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
    logger.error({ requestId: c.get('requestId'), err: { name: error.name, message: error.message, stack: error.stack } }, 'unhandled error');
    return problemResponse(c, 500, 'Internal error', `the request failed; quote request id ${c.get('requestId')}`);
  });
  app.notFound((c) => appErrorResponse(c, { kind: 'not_found', detail: `no route for ${c.req.method} ${c.req.path}` }));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const checks: Record<string, () => Promise<void>> = {
      batches: () => services.batches.check(),
      payloads: () => services.payloads.check(),
      sink: () => services.sink.check(),
      orchestrator: () => services.orchestrator.check(),
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
    return appErrorResponse(c, { kind: 'backend_unavailable', detail: failing.map(([name, state]) => `${name}: ${state}`).join('; ') });
  });
  app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));

  app.route('/ui', createUiApp());
  app.use('/v1/*', requireApiKey(deps.keys));
  app.use('/v1/*', checkRequest(app.openAPIRegistry));
  app.route('/', paprRoutes({ services, metrics, maxJsonBodyBytes: deps.maxJsonBodyBytes, singleAddWaitMs: deps.singleAddWaitMs ?? 10_000 }));

  app.route(
    '/',
    submitRoutes({
      services,
      metrics,
      maxJsonBodyBytes: deps.maxJsonBodyBytes,
      maxNdjsonBodyBytes: deps.maxNdjsonBodyBytes ?? defaultMaxNdjsonBodyBytes,
      reader: deps.bodyReader ?? inlineBodyReader(services.settings),
    }),
  );
  app.route('/', batchRoutes(services));
  app.route('/', createEventsApp(services, deps.eventStream, deps.shutdown));
  app.route('/', createResultFilesApp(services));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', { type: 'apiKey', in: 'header', name: 'X-API-Key' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'batchmem', version: '0.1.0', description: 'Durable, exactly-once ingestion of large batches of AI memories.' },
  });
  app.get('/docs', swaggerUI({ url: '/openapi.json' }));
  return app;
}
