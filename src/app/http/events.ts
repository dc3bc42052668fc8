// GET /v1/batch/{id}/events: a batch's progress as Server-Sent Events, resumable across connections.
//
// Each event's id is the batch's progress version (domain/lifecycle.ts `progressVersion`): the same state has the same
// id on every connection and every API process, and a later state a larger one. A client that reconnects with
// `Last-Event-ID: n` therefore gets only states after n, and exactly one `done` event overall: the final state is
// sent once, as `done`, and a stream opened on a final batch the client has seen ends at once with 204.
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { batchKey } from '../../domain/batch.ts';
import { isFinal, progressVersion } from '../../domain/lifecycle.ts';
import { batchResource, outcomesOf } from '../batch-resource.ts';
import { validation } from '../errors.ts';
import { getBatch } from '../requests/read-batches.ts';
import { watchBatch } from '../requests/watch-batch.ts';
import type { Services } from '../services.ts';
import { appErrorResponse, problemDocs } from './problem.ts';
import { guarded, router, security } from './router.ts';
import * as doc from './schemas.ts';

export interface EventStreamTiming {
  /** A comment line this often keeps proxies from closing a quiet stream (many close after 30 to 60 s idle). */
  heartbeatMs: number;
  /** The `retry:` hint: how long a client waits before reconnecting. */
  retryMs: number;
}

export const defaultEventStreamTiming: EventStreamTiming = { heartbeatMs: 15_000, retryMs: 2_000 };

const route = createRoute({
  method: 'get',
  path: '/v1/batch/{id}/events',
  security,
  summary: 'Live progress (SSE), resumable with Last-Event-ID',
  request: {
    params: doc.BatchIdParam,
    headers: z.object({
      'last-event-id': z.string().optional().openapi({ description: 'The id of the last event received: only newer states are sent' }),
    }),
  },
  responses: {
    200: {
      description:
        '`progress` events while the batch runs and one `done` event with the final state, then the stream ends. Event ids are the ' +
        "batch's progress_version. A comment line every 15 s while nothing changes; a `retry:` hint first.",
      content: { 'text/event-stream': { schema: z.string() } },
    },
    204: { description: 'The batch is final and Last-Event-ID already covers its final state' },
    ...guarded,
    ...problemDocs('not_found'),
  },
});

/**
 * `shutdown`: aborted when the server stops. Every open stream then ends at once, without a `done` event, so that a
 * stop does not wait for the watched batches to finish; the client reconnects with `Last-Event-ID` (to another
 * process or after the restart) and misses nothing.
 */
export function createEventsApp(services: Services, timing: EventStreamTiming = defaultEventStreamTiming, shutdown?: AbortSignal) {
  const app = router();
  app.openapi(route, async (c) => {
    const { id } = c.req.valid('param');
    const header = c.req.header('last-event-id');
    let seen = -1;
    if (header !== undefined && header.trim() !== '') {
      if (!/^\d{1,15}$/.test(header.trim())) {
        return appErrorResponse(c, validation('Last-Event-ID must be an event id this stream sent', [{ path: 'Last-Event-ID', message: 'must be a whole number' }]));
      }
      seen = Number(header.trim());
    }
    const tenant = c.get('tenant');
    const found = await getBatch(services, tenant, id);
    if (!found.ok) return appErrorResponse(c, found.error);
    if (isFinal(found.value.status) && progressVersion(found.value) <= seen) return c.body(null, 204);

    // Proxies such as nginx buffer responses unless told not to, which would hold events back.
    c.header('x-accel-buffering', 'no');
    return streamSSE(c, async (stream) => {
      const abort = new AbortController();
      stream.onAbort(() => abort.abort());
      const stop = () => abort.abort();
      if (shutdown?.aborted) stop();
      shutdown?.addEventListener('abort', stop, { once: true });
      const heartbeat = setInterval(() => {
        void stream.write(': keep-alive\n\n').catch(() => abort.abort());
      }, timing.heartbeatMs);
      try {
        await stream.write(`retry: ${timing.retryMs}\n\n`);
        for await (const batch of watchBatch(services, batchKey(tenant.organization, id), abort.signal)) {
          const version = progressVersion(batch);
          // Already seen on an earlier connection, or a change no watcher counts (a webhook attempt).
          if (version <= seen) continue;
          seen = version;
          const final = isFinal(batch.status);
          await stream.writeSSE({ event: final ? 'done' : 'progress', id: String(version), data: JSON.stringify(batchResource(batch, await outcomesOf(services, batch))) });
          if (final) break;
        }
      } finally {
        clearInterval(heartbeat);
        shutdown?.removeEventListener('abort', stop);
      }
    });
  });
  return app;
}
