// The batch resource: read one, list, delete, cancel, retry, redeliver its webhook, and page through its per-item
// results and errors. Its live progress (events.ts) and its result files (result-files.ts) are routers of their own.
import { createRoute, z } from '@hono/zod-openapi';
import { batchMetadataIssues } from '../../domain/batch.ts';
import { batchResource, outcomesOf } from '../batch-resource.ts';
import { validation } from '../errors.ts';
import { cancelBatch } from '../requests/cancel-batch.ts';
import { deleteBatch } from '../requests/delete-batch.ts';
import { retryBatch } from '../requests/retry-batch.ts';
import { redeliverWebhook } from '../requests/redeliver-webhook.ts';
import { getBatch, listBatches, listErrors, listResults } from '../requests/read-batches.ts';
import type { OrchestratedServices } from '../services.ts';
import { batchResourceWithErrors } from './papr.ts';
import { appErrorResponse, problemDocs } from './problem.ts';
import { bracketParams, guarded, router, security } from './router.ts';
import * as doc from './schemas.ts';

const json = <S extends z.ZodType>(description: string, schema: S) => ({ description, content: { 'application/json': { schema } } });

const routes = {
  get: createRoute({
    method: 'get', path: '/v1/batch/{id}', security, request: { params: doc.BatchIdParam },
    responses: { 200: json('The batch', doc.BatchDoc), ...guarded, ...problemDocs('not_found') },
  }),
  list: createRoute({
    method: 'get', path: '/v1/batch', security, request: { query: doc.ListQuery },
    responses: { 200: json('Batches, newest first', doc.BatchPageDoc), ...guarded },
  }),
  delete: createRoute({
    method: 'delete', path: '/v1/batch/{id}', security, request: { params: doc.BatchIdParam },
    summary: 'Delete a final batch: its payload and record go, the memories it stored stay in the memory store',
    responses: { 204: { description: 'Deleted' }, ...guarded, ...problemDocs('not_found', 'wrong_state') },
  }),
  cancel: createRoute({
    method: 'post', path: '/v1/batch/{id}/cancel', security, request: { params: doc.BatchIdParam },
    responses: { 202: json('Cancelling', doc.BatchDoc), ...guarded, ...problemDocs('not_found', 'wrong_state') },
  }),
  retry: createRoute({
    method: 'post', path: '/v1/batch/{id}/retry', security, request: { params: doc.BatchIdParam },
    summary: 'Redrive a final batch: process again only the memories whose outcome is failed (and any a stopped run never reached)',
    responses: { 202: json('Processing again', doc.BatchDoc), ...guarded, ...problemDocs('not_found', 'wrong_state') },
  }),
  redeliver: createRoute({
    method: 'post', path: '/v1/batch/{id}/webhook/redeliver', security, request: { params: doc.BatchIdParam },
    summary: "Send a final batch's webhook again: the same event and webhook-id, with a fresh count of attempts",
    description:
      'For a receiver that was down past the last attempt, answered 410 Gone, or lost the event. 404 when the batch ' +
      'has no webhook, 409 while it is not final (its webhook goes out when it is) or while a delivery of its event is ' +
      'in progress (not delivered, retry loop not given up). The delivery state on the batch ' +
      '(`webhook.delivered`, `attempts`, `last_error`) starts again and follows the new attempts.',
    responses: { 202: json('Redelivering', doc.BatchDoc), ...guarded, ...problemDocs('not_found', 'wrong_state') },
  }),
  results: createRoute({
    method: 'get', path: '/v1/batch/{id}/results', security, request: { params: doc.BatchIdParam, query: doc.PageQuery },
    responses: { 200: json('Per-item results by index', doc.ResultPageDoc), ...guarded, ...problemDocs('not_found') },
  }),
  errors: createRoute({
    method: 'get', path: '/v1/batch/{id}/errors', security, request: { params: doc.BatchIdParam, query: doc.PageQuery },
    responses: { 200: json('Per-item errors by index', doc.ErrorPageDoc), ...guarded, ...problemDocs('not_found') },
  }),
};

export function batchRoutes(services: OrchestratedServices) {
  const app = router();

  app.openapi(routes.get, async (c) => {
    const { id } = c.req.valid('param');
    const result = await getBatch(services, c.get('tenant'), id);
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json(await batchResourceWithErrors(services, result.value), 200);
  });

  app.openapi(routes.list, async (c) => {
    const { metadata: _documentedOnly, ...query } = c.req.valid('query');
    const metadata = bracketParams(new URL(c.req.url).searchParams, 'metadata');
    if (metadata) {
      const issues = batchMetadataIssues(metadata).map((issue) => ({ ...issue, path: issue.path.replace(/^metadata\.(.*)$/, 'metadata[$1]') }));
      if (issues.length > 0) return appErrorResponse(c, validation(`metadata filter is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues));
    }
    const result = await listBatches(services, c.get('tenant'), { ...query, metadata });
    if (!result.ok) return appErrorResponse(c, result.error);
    const data = await Promise.all(result.value.items.map(async (batch) => batchResource(batch, await outcomesOf(services, batch))));
    return c.json({ data, next_cursor: result.value.nextCursor }, 200);
  });

  app.openapi(routes.delete, async (c) => {
    const { id } = c.req.valid('param');
    const result = await deleteBatch(services, c.get('tenant'), id);
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.body(null, 204);
  });

  app.openapi(routes.cancel, async (c) => {
    const { id } = c.req.valid('param');
    const result = await cancelBatch(services, c.get('tenant'), id);
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json(batchResource(result.value, await outcomesOf(services, result.value)), 202);
  });

  app.openapi(routes.retry, async (c) => {
    const { id } = c.req.valid('param');
    const result = await retryBatch(services, c.get('tenant'), id);
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json(batchResource(result.value, await outcomesOf(services, result.value)), 202);
  });

  app.openapi(routes.redeliver, async (c) => {
    const { id } = c.req.valid('param');
    const result = await redeliverWebhook(services, c.get('tenant'), id);
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json(batchResource(result.value, await outcomesOf(services, result.value)), 202);
  });

  app.openapi(routes.results, async (c) => {
    const { id } = c.req.valid('param');
    const result = await listResults(services, c.get('tenant'), id, c.req.valid('query'));
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json({ data: result.value.items, next_cursor: result.value.nextCursor }, 200);
  });

  app.openapi(routes.errors, async (c) => {
    const { id } = c.req.valid('param');
    const result = await listErrors(services, c.get('tenant'), id, c.req.valid('query'));
    if (!result.ok) return appErrorResponse(c, result.error);
    return c.json({ data: result.value.items, next_cursor: result.value.nextCursor }, 200);
  });

  return app;
}
