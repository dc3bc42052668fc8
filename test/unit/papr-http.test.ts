// Papr's dialect at the HTTP edge, in process (app.request on fakes): each row of issue 13's table, the bad inputs
// of the new fields, the dedupe window and the Idempotency-Key body check.
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { HttpWebhookNotifier } from '../../src/adapters/webhook/notifier.ts';
import { keyring } from '../../src/app/api-keys.ts';
import { defaultSettings, type OrchestratedServices, type Settings } from '../../src/app/services.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { deliverWebhook } from '../../src/app/processing/deliver-webhook.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { systemClock } from '../../src/ports/clock.ts';
import type { Orchestrator } from '../../src/ports/orchestrator.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';

const keyA = 'key-a-0123456789abcdef';
const keyB = 'key-b-0123456789abcdef';

/** Runs each started batch right away (in the background), so single adds can finish within their wait. */
class RunningOrchestrator implements Orchestrator {
  services!: OrchestratedServices;
  readonly runs: Promise<unknown>[] = [];
  manual = false;
  async start(batchKey: string) {
    if (!this.manual) this.runs.push(runBatch(this.services, batchKey, { workerId: 'w', signal: new AbortController().signal }));
    return { workflowId: `batch-${batchKey}` };
  }
  async cancel() {}
  async redeliver() {}
  async describe() {
    return undefined;
  }
  async check() {}
  async close() {}
}

function setup(settings: Partial<Settings> = {}, options: { singleAddWaitMs?: number } = {}) {
  const orchestrator = new RunningOrchestrator();
  const notifier = new ScriptedNotifier();
  const services: OrchestratedServices & { batches: MemoryBatchRepository; payloads: MemoryPayloadStore; sink: MemorySinkFake } = {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new MemorySinkFake(),
    webhooks: notifier,
    clock: systemClock,
    orchestrator,
    settings: { ...defaultSettings, watchIntervalMs: 10, ...settings },
  };
  orchestrator.services = services;
  const app = createHttpApp({
    services,
    keys: keyring([
      { key: keyA, organization: 'org-a', namespace: 'ns-a', user: 'u', workspace: 'default' },
      { key: keyB, organization: 'org-b', namespace: 'default', user: 'u', workspace: 'default' },
    ]),
    logger: createLogger('silent'),
    metrics: createMetrics(),
    maxJsonBodyBytes: 1024 * 1024,
    singleAddWaitMs: options.singleAddWaitMs ?? 2000,
  });
  const post = (path: string, body: unknown, headers: Record<string, string> = { 'x-api-key': keyA }) =>
    app.request(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const get = (path: string, headers: Record<string, string> = { 'x-api-key': keyA }) => app.request(path, { headers });
  const settle = () => Promise.all(orchestrator.runs);
  const nothingStored = () => services.batches.batches.size === 0 && services.payloads.objects.size === 0 && services.sink.memories.size === 0;
  return { services, app, post, get, settle, orchestrator, notifier, nothingStored };
}

const everyField = {
  memories: [
    {
      content: 'Meeting notes from the planning session',
      type: 'text',
      metadata: { topics: ['planning'], customMetadata: { priority: 'high' } },
      context: [{ role: 'user', content: 'what did we decide?' }, { role: 'assistant', content: 'to ship in May' }],
      relationships_json: [{ relation_type: 'follows', related_item_id: 'mem_1', related_item_type: 'TextMemoryItem', metadata: {} }],
      external_user_id: 'alice',
      user_id: 'parse-user-1',
      namespace_id: 'ns-a',
      organization_id: 'org-a',
      graph_generation: { mode: 'auto', auto: { schema_id: 'sch_1' } },
      link_to: 'Task:title',
      memory_policy: { mode: 'auto', consent: 'explicit', risk: 'none' },
      policy: { graph: { link_to: ['Person:email'] } },
    },
    { content: 'Follow-up tasks', metadata: null, type: null },
  ],
  batch_size: 10,
  external_user_id: 'batch-user',
  user_id: null,
  namespace_id: 'ns-a',
  organization_id: 'org-a',
  graph_generation: { mode: 'manual', manual: { nodes: [] } },
  link_to: ['Project:name'],
  memory_policy: { mode: 'manual' },
  policy: null,
  webhook_url: null,
  webhook_secret: null,
};

describe('Papr clients at the HTTP edge', () => {
  it('accepts X-API-Key as well as a bearer token, and refuses two different keys in one request', async () => {
    const { post } = setup();
    expect((await post('/v1/memory/batch', { memories: [{ content: 'x-api-key only' }] })).status).toBe(202);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'both, same key' }] }, { 'x-api-key': keyA, authorization: `Bearer ${keyA}` })).status).toBe(202);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'bearer only' }] }, { authorization: `Bearer ${keyA}` })).status).toBe(202);
    const both = await post('/v1/memory/batch', { memories: [{ content: 'two keys' }] }, { 'x-api-key': keyA, authorization: `Bearer ${keyB}` });
    expect(both.status).toBe(401);
    expect(((await both.json()) as { detail: string }).detail).toContain('different keys');
    expect((await post('/v1/memory/batch', { memories: [{ content: 'unknown key' }] }, { 'x-api-key': 'not-a-key-0123456789' })).status).toBe(401);
  });

  it("answers a submit with Papr's batch_id, code, message, totals and errors beside batchmem's fields", async () => {
    const { post, get, settle } = setup();
    const response = await post('/v1/memory/batch', { memories: [{ content: 'one' }, { content: 'two' }] });
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status).toBe(202);
    expect(body).toMatchObject({ batch_id: body.id, code: 202, total_processed: 0, total_successful: 0, total_failed: 0, errors: [], request_counts: { total: 2 } });
    expect(body.message).toContain(String(body.id));
    await settle();
    const status = (await (await get(`/v1/memory/batch/status/${body.id}`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ id: body.id, batch_id: body.id, status: 'completed', code: 200, total_processed: 2, total_successful: 2, total_failed: 0 });
  });

  it('accepts every field the SDKs send, reads null as absent, and stores the batch defaults under each memory', async () => {
    const { services, post, get, settle } = setup();
    const response = await post('/v1/memory/batch?skip_background_processing=true&enable_holographic=false&frequency_schema_id=cosqa', everyField);
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    await settle();
    const stored = [...services.sink.memories.values()].sort((a, b) => a.index - b.index);
    expect(stored.map((m) => m.attributes)).toEqual([
      {
        context: everyField.memories[0]!.context,
        relationships_json: everyField.memories[0]!.relationships_json,
        external_user_id: 'alice',
        user_id: 'parse-user-1',
        namespace_id: 'ns-a',
        organization_id: 'org-a',
        graph_generation: everyField.memories[0]!.graph_generation,
        link_to: 'Task:title',
        memory_policy: everyField.memories[0]!.memory_policy,
        policy: everyField.memories[0]!.policy,
      },
      {
        external_user_id: 'batch-user',
        namespace_id: 'ns-a',
        organization_id: 'org-a',
        graph_generation: { mode: 'manual', manual: { nodes: [] } },
        link_to: ['Project:name'],
        memory_policy: { mode: 'manual' },
      },
    ]);
    expect(stored[1]).toMatchObject({ type: null, metadata: null });
    const results = (await (await get(`/v1/batch/${id}/results`)).json()) as { data: Record<string, unknown>[] };
    expect(results.data[0]).toMatchObject({ index: 0, status: 'succeeded', external_user_id: 'alice', context: everyField.memories[0]!.context });
    expect(results.data[1]).toMatchObject({ index: 1, external_user_id: 'batch-user', link_to: ['Project:name'] });
  });

  it('still refuses unknown keys, naming their path', async () => {
    const { post, nothingStored } = setup();
    const onItem = await post('/v1/memory/batch', { memories: [{ content: 'a', priority: 'high' }] });
    expect(onItem.status).toBe(400);
    expect(JSON.stringify(await onItem.json())).toContain('priority');
    const onEnvelope = await post('/v1/memory/batch', { memories: [{ content: 'a' }], batch_priority: 1 });
    expect(onEnvelope.status).toBe(400);
    const nested = await post('/v1/memory/batch', { memories: [{ content: 'a', context: [{ role: 'user', content: 'x', mood: 'ok' }] }] });
    expect(nested.status).toBe(400);
    expect(((await nested.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe('memories.0.context.0');
    expect(nothingStored()).toBe(true);
  });

  it.each([
    ['organization_id on a memory', { memories: [{ content: 'a', organization_id: 'org-b' }] }, 'organization_id'],
    ['namespace_id on a memory', { memories: [{ content: 'a', namespace_id: 'other' }] }, 'namespace_id'],
    ['organization_id for the batch', { memories: [{ content: 'a' }], organization_id: 'org-b' }, 'organization_id'],
    ['namespace_id for the batch', { memories: [{ content: 'a' }], namespace_id: 'default' }, 'namespace_id'],
  ])("answers 403 for another tenant's %s and stores nothing", async (_name, body, field) => {
    const { post, nothingStored } = setup();
    const response = await post('/v1/memory/batch', body);
    expect(response.status).toBe(403);
    expect(((await response.json()) as { detail: string }).detail).toContain(field);
    expect(nothingStored()).toBe(true);
  });

  it.each([
    ['batch_size zero', { batch_size: 0 }, 'batch_size'],
    ['batch_size a string', { batch_size: '10' }, 'batch_size'],
    ['batch_size a fraction', { batch_size: 1.5 }, 'batch_size'],
    ['batch_size over 1000', { batch_size: 1001 }, 'batch_size'],
    ['external_user_id a number', { external_user_id: 7 }, 'external_user_id'],
    ['user_id over 256 characters', { user_id: 'u'.repeat(257) }, 'user_id'],
    ['link_to a number', { link_to: 3 }, 'link_to'],
    ['memory_policy an array', { memory_policy: [] }, 'memory_policy'],
    ['graph_generation over the size limit', { graph_generation: { big: 'x'.repeat(17 * 1024) } }, 'graph_generation'],
  ])('refuses a batch-level %s with 400 naming the field', async (_name, fields, field) => {
    const { post, nothingStored } = setup();
    const response = await post('/v1/memory/batch', { memories: [{ content: 'a' }], ...fields });
    expect(response.status).toBe(400);
    const problem = (await response.json()) as { errors: { path: string }[] };
    expect(problem.errors.map((e) => e.path).join(' ')).toContain(field);
    expect(nothingStored()).toBe(true);
  });

  it.each([
    ['context not a list', { context: 'hi' }, 'context'],
    ['context with a bad role', { context: [{ role: 'system', content: 'x' }] }, 'context.0.role'],
    ['context over 100 entries', { context: Array.from({ length: 101 }, () => ({ role: 'user', content: 'x' })) }, 'context'],
    ['relationships_json without relation_type', { relationships_json: [{ related_item_id: 'm' }] }, 'relationships_json.0.relation_type'],
    ['external_user_id empty', { external_user_id: '' }, 'external_user_id'],
    ['policy with a __proto__ key', { policy: JSON.parse('{"__proto__": {"x": 1}}') }, 'policy'],
    ['memory_policy nested 9 levels', { memory_policy: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } }, 'memory_policy'],
  ])('refuses a memory with %s with 400 naming the path', async (_name, fields, path) => {
    const { post, nothingStored } = setup();
    const response = await post('/v1/memory/batch', { memories: [{ content: 'a', ...fields }] });
    expect(response.status).toBe(400);
    const problem = (await response.json()) as { errors: { path: string }[] };
    expect(problem.errors.map((e) => e.path)).toContain(`memories.0.${path}`);
    expect(nothingStored()).toBe(true);
  });

  it('accepts a plain webhook secret of 16 to 256 printable characters and refuses shorter or spaced ones', async () => {
    const { post } = setup();
    const hook = { webhook_url: 'https://hooks.example.com/papr' };
    expect((await post('/v1/memory/batch', { memories: [{ content: 'a' }], ...hook, webhook_secret: 'placeholder-secret' })).status).toBe(202);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'b' }], ...hook, webhook_secret: 's'.repeat(256) })).status).toBe(202);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'c' }], ...hook, webhook_secret: 'short-secret' })).status).toBe(400);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'd' }], ...hook, webhook_secret: 's'.repeat(257) })).status).toBe(400);
    expect((await post('/v1/memory/batch', { memories: [{ content: 'e' }], ...hook, webhook_secret: 'with a space inside' })).status).toBe(400);
  });

  it('stores a single add as a one-memory batch and answers in Papr’s add shape once it is stored', async () => {
    const { services, post } = setup();
    const response = await post('/v1/memory', { content: 'single memory', external_user_id: 'alice', metadata: null });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { code: number; status: string; data: { memoryId: string; objectId: string; createdAt: string }[]; batch_id: string };
    expect(body).toMatchObject({ code: 200, status: 'success' });
    const [stored] = [...services.sink.memories.values()];
    expect(body.data).toEqual([{ memoryId: stored!.memoryId, objectId: stored!.memoryId, createdAt: expect.any(String), memoryChunkIds: [] }]);
    expect(stored!.attributes).toEqual({ external_user_id: 'alice' });
    expect(services.batches.batches.get(stored!.batchKey)?.id).toBe(body.batch_id);
  });

  it('answers a single add that updated a memory (same external_id) with that memory’s id, not a new one', async () => {
    const { services, post } = setup();
    const first = (await (await post('/v1/memory', { content: 'first value', external_id: 'ext-1' })).json()) as { data: { memoryId: string }[] };
    const response = await post('/v1/memory', { content: 'second value', external_id: 'ext-1' });
    expect(response.status).toBe(200);
    const second = (await response.json()) as { batch_id: string; data: { memoryId: string; objectId: string }[] };
    expect(services.sink.memories.size).toBe(1);
    const [stored] = [...services.sink.memories.values()];
    expect(stored!.content).toBe('second value');
    expect(second.data[0]).toMatchObject({ memoryId: first.data[0]!.memoryId, objectId: first.data[0]!.memoryId });
    expect(second.data[0]!.memoryId).toBe(stored!.memoryId);
  });

  it('answers a single add 202 with its batch id when the memory is not stored within the wait', async () => {
    const { post, orchestrator } = setup({}, { singleAddWaitMs: 50 });
    orchestrator.manual = true;
    const response = await post('/v1/memory', { content: 'slow memory' });
    expect(response.status).toBe(202);
    const body = (await response.json()) as { code: number; status: string; batch_id: string; data: { memoryId: string }[] };
    expect(body).toMatchObject({ code: 202, status: 'accepted' });
    expect(body.data[0]!.memoryId).toMatch(/^mem_/);
    expect(response.headers.get('location')).toBe(`/v1/batch/${body.batch_id}`);
  });

  it('refuses a bad single add with 4xx and stores nothing', async () => {
    const { post, nothingStored } = setup();
    const unknown = await post('/v1/memory', { content: 'a', priority: 1 });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe('');
    expect((await post('/v1/memory', { content: '' })).status).toBe(400);
    expect((await post('/v1/memory', '[1]')).status).toBe(400);
    expect((await post('/v1/memory', '{"content": "a",')).status).toBe(400);
    expect((await post('/v1/memory', { content: 'a', organization_id: 'org-b' })).status).toBe(403);
    expect((await post('/v1/memory?webhook_url=https://hooks.example.com/x&webhook_secret=short', { content: 'a' })).status).toBe(400);
    expect(nothingStored()).toBe(true);
  });

  it('answers a key-less retry of the same body with the first batch, marked Idempotent-Replayed', async () => {
    const { services, post } = setup();
    const first = await post('/v1/memory/batch', everyField);
    // The same request as the Python SDK would re-send it: keys in another order, nulls dropped.
    const reordered = Object.fromEntries(Object.entries(everyField).reverse().filter(([, value]) => value !== null));
    const retry = await post('/v1/memory/batch', reordered);
    expect(first.status).toBe(202);
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(((await retry.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
    expect(services.batches.batches.size).toBe(1);
    const other = await post('/v1/memory/batch', { ...everyField, external_user_id: 'someone-else' });
    expect(other.status).toBe(202);
    expect(services.batches.batches.size).toBe(2);
    // The same body from another tenant is its own batch.
    const fromB = await post('/v1/memory/batch', { memories: [{ content: 'shared text' }] }, { 'x-api-key': keyB });
    const fromA = await post('/v1/memory/batch', { memories: [{ content: 'shared text' }] });
    expect([fromB.status, fromA.status]).toEqual([202, 202]);
  });

  it('makes a new batch for the same body once the window has passed, and every time when the window is 0', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const windowed = setup({ dedupeWindowMs: 60_000 });
    windowed.services.clock = { now: () => new Date(now) };
    expect((await windowed.post('/v1/memory/batch', { memories: [{ content: 'a' }] })).status).toBe(202);
    now += 59_000;
    expect((await windowed.post('/v1/memory/batch', { memories: [{ content: 'a' }] })).status).toBe(200);
    now += 2_000;
    expect((await windowed.post('/v1/memory/batch', { memories: [{ content: 'a' }] })).status).toBe(202);
    expect(windowed.services.batches.batches.size).toBe(2);

    const off = setup({ dedupeWindowMs: 0 });
    expect((await off.post('/v1/memory/batch', { memories: [{ content: 'a' }] })).status).toBe(202);
    expect((await off.post('/v1/memory/batch', { memories: [{ content: 'a' }] })).status).toBe(202);
    expect(off.services.batches.batches.size).toBe(2);
  });

  it('answers 422 for an Idempotency-Key reused with a different body, and the first batch for the same body', async () => {
    const { services, post } = setup();
    const headers = { 'x-api-key': keyA, 'idempotency-key': 'order-42' };
    const first = await post('/v1/memory/batch', { memories: [{ content: 'a' }] }, headers);
    expect(first.status).toBe(202);
    const same = await post('/v1/memory/batch', { memories: [{ content: 'a' }] }, headers);
    expect(same.status).toBe(200);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    const different = await post('/v1/memory/batch', { memories: [{ content: 'b' }] }, headers);
    expect(different.status).toBe(422);
    expect(((await different.json()) as { detail: string }).detail).toContain('Idempotency-Key');
    expect(services.batches.batches.size).toBe(1);
    expect(services.payloads.objects.size).toBe(1);
  });

  it('answers the batch status route for the own tenant only', async () => {
    const { post, get } = setup();
    const { id } = (await (await post('/v1/memory/batch', { memories: [{ content: 'a' }] })).json()) as { id: string };
    expect((await get(`/v1/memory/batch/status/${id}`)).status).toBe(200);
    expect((await get(`/v1/memory/batch/status/${id}`, { 'x-api-key': keyB })).status).toBe(404);
    expect((await get('/v1/memory/batch/status/..%2F..%2Fetc')).status).toBe(404);
    expect((await get(`/v1/memory/batch/status/${id}`, {})).status).toBe(401);
  });
});

describe('the OpenAPI document', () => {
  it('documents the Papr routes, the X-API-Key scheme and the Papr fields', async () => {
    const { app } = setup();
    const openapi = (await (await app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/v1/memory', '/v1/memory/batch/status/{batch_id}', '/v1/memory/batch']));
    expect(openapi.components.securitySchemes.apiKey).toEqual({ type: 'apiKey', in: 'header', name: 'X-API-Key' });
    expect(Object.keys(openapi.components.schemas.MemoryItem!.properties!)).toEqual(expect.arrayContaining(['context', 'relationships_json', 'external_user_id', 'memory_policy']));
    expect(Object.keys(openapi.components.schemas.SubmitBatch!.properties!)).toEqual(expect.arrayContaining(['batch_size', 'namespace_id', 'organization_id']));
    expect(Object.keys(openapi.components.schemas.Batch!.properties!)).toEqual(expect.arrayContaining(['batch_id', 'total_successful', 'errors']));
  });
});

describe('webhooks for Papr receivers', () => {
  it.each([
    ['a plain secret', 'placeholder-secret-for-papr'],
    ['a whsec_ secret', 'whsec_' + Buffer.alloc(32, 7).toString('base64')],
  ])('signs with %s both ways, names the event, and keeps the body small with Papr top-level fields', async (_name, secret) => {
    const { services, post, settle, notifier } = setup();
    const memories = Array.from({ length: 500 }, (_, i) => ({ content: `memory ${i}` }));
    const response = await post('/v1/memory/batch', { memories, webhook_url: 'https://hooks.example.com/papr', webhook_secret: secret });
    const { id } = (await response.json()) as { id: string };
    await settle();
    const batch = [...services.batches.batches.values()][0]!;
    await deliverWebhook(services, batch.key);
    const message = notifier.sent[0]!;
    expect(message.payload).toMatchObject({ type: 'batch.completed', batch_id: id, status: 'completed', total_memories: 500, successful_memories: 500, failed_memories: 0 });
    expect(JSON.stringify(message.payload).length).toBeLessThan(4096);
    expect(JSON.stringify(message.payload)).not.toContain(secret);

    // The real notifier, against a receiver on loopback: what goes on the wire.
    const sent: { headers: Headers; body: string }[] = [];
    const receiver = createServer((request, answer) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const headers = new Headers();
        for (const [name, value] of Object.entries(request.headers)) if (typeof value === 'string') headers.set(name, value);
        sent.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
        answer.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const notifierOverHttp = new HttpWebhookNotifier({ timeoutMs: 1000, allowPrivate: true });
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/papr`;
      const attempt = await notifierOverHttp.send({ ...message, url });
      expect(attempt.delivered).toBe(true);
    } finally {
      await notifierOverHttp.close();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
    const { headers, body } = sent[0]!;
    expect(headers.get('x-webhook-event')).toBe('batch.completed');
    expect(headers.get('x-webhook-signature')).toBe('sha256=' + createHmac('sha256', secret).update(body).digest('hex'));
    const verifier = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });
    expect(() =>
      verifier.verify(body, {
        'webhook-id': headers.get('webhook-id')!,
        'webhook-timestamp': headers.get('webhook-timestamp')!,
        'webhook-signature': headers.get('webhook-signature')!,
      }),
    ).not.toThrow();
    expect(JSON.stringify(Object.fromEntries(headers as unknown as Iterable<[string, string]>))).not.toContain(secret);
    expect(body).not.toContain(secret);
  });
});
