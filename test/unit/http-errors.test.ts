// Every HTTP error path, in process: the bad-input corpus (test/fixtures/bad-input) and the remaining 4xx/5xx cases
// sent with `app.request` to the real HTTP app over the in-memory fakes and the in-process runner. Each answer is
// problem+json naming what was wrong, nothing is stored, and the app serves the next request. The same corpus runs
// against a real server process in test/e2e/bad-input.test.ts.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyring } from '../../src/app/api-keys.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { defaultSettings, type OrchestratedServices, type Services } from '../../src/app/services.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { type BadInputCase, caseBody, holdMarker, loadCorpus, requestHeaders, setupBatches, setupMemories, unsafeWebhookTargets } from '../support/bad-input.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';
import { FaultySink } from '../support/faults/memory-sink.ts';

const corpus = loadCorpus();
const keys = [
  { key: 'key-a-0123456789abcdef0123456789abcdef', organization: 'org-a', namespace: 'ns', user: 'user-a', workspace: 'ws' },
  { key: 'key-b-0123456789abcdef0123456789abcdef', organization: 'org-b', namespace: 'ns', user: 'user-b', workspace: 'ws' },
];
const keyOf = { a: keys[0]!.key, b: keys[1]!.key };
const auth = (tenant: 'a' | 'b') => ({ authorization: `Bearer ${keyOf[tenant]}` });

function inProcessApp(overrides: Partial<Services> = {}) {
  const output: string[] = [];
  const memories = new MemorySinkFake();
  // The corpus's `processing` setup batch is held running by its marked memory (test/support/bad-input.ts holdMarker).
  const held = new FaultySink(memories, { segmentFailureRate: 0, holdMarker });
  const base: Services = {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: held,
    webhooks: new ScriptedNotifier(),
    clock: systemClock,
    // The limits of the e2e corpus run, so the oversize cases stay small.
    settings: { ...defaultSettings, maxMemoriesPerBatch: 100, allowPrivateWebhooks: false, watchIntervalMs: 20 },
    ...overrides,
  };
  const orchestrator = new LocalOrchestrator(base, { workerId: 'unit', batchConcurrency: 2 });
  const services: OrchestratedServices = { ...base, orchestrator };
  const sink = new Writable({ write(chunk, _encoding, done) { output.push(String(chunk)); done(); } });
  const app = createHttpApp({
    services,
    keys: keyring(keys),
    logger: createLogger('info', sink),
    metrics: createMetrics(),
    maxJsonBodyBytes: 64 * 1024,
    maxNdjsonBodyBytes: 300 * 1024,
  });
  const close = async () => {
    held.releaseHeld();
    await orchestrator.close();
  };
  return { app, services, memories, orchestrator, close, output: () => output.join('') };
}

type InProcess = ReturnType<typeof inProcessApp>;

/** The request a corpus case describes; a case that drops its connection sends a body stream that fails midway. */
function caseRequest(c: BadInputCase): [string, RequestInit] {
  const query = c.query ? `?${new URLSearchParams(c.query).toString()}` : '';
  const init: RequestInit & { duplex?: 'half' } = { method: c.method, headers: requestHeaders(c, keyOf) };
  if (c.auth === 'wrong') init.headers = { ...init.headers, authorization: 'Bearer key-wrong-00000000000000000000' };
  const body = caseBody(c);
  if (body && (c.chunked || c.abortAfterBytes !== undefined)) {
    const sent = c.abortAfterBytes === undefined ? body : body.subarray(0, c.abortAfterBytes);
    let offset = 0;
    init.body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= sent.length) {
          if (c.abortAfterBytes !== undefined) controller.error(new Error('connection reset by the client'));
          else controller.close();
          return;
        }
        controller.enqueue(new Uint8Array(sent.subarray(offset, offset + 16 * 1024)));
        offset += 16 * 1024;
      },
    });
    init.duplex = 'half';
  } else if (body) {
    init.body = new Uint8Array(body);
  }
  return [`${c.path}${query}`, init];
}

async function stored(env: InProcess) {
  const batches = env.services.batches as MemoryBatchRepository;
  return {
    batches: [...batches.batches.values()].map((b) => `${b.tenant.organization}/${b.id}`).sort(),
    payloads: (env.services.payloads as MemoryPayloadStore).objects.size,
    memories: env.memories.memories.size,
  };
}

async function expectProblem(response: Response, status: number): Promise<{ title: string; detail: string; errors?: unknown[] }> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = JSON.parse(text) as { type: string; title: string; status: number; detail: string; errors?: unknown[] };
  expect(problem).toMatchObject({ type: expect.stringMatching(/^https?:\/\//), title: expect.any(String), status });
  expect(problem.detail.length).toBeGreaterThan(0);
  for (const key of Object.values(keyOf)) expect(text).not.toContain(key);
  return problem;
}

async function waitForStatus(env: InProcess, tenant: 'a' | 'b', id: string, statuses: string[]): Promise<{ status: string }> {
  for (;;) {
    const batch = (await (await env.app.request(`/v1/batch/${id}`, { headers: auth(tenant) })).json()) as { status: string };
    if (statuses.includes(batch.status)) return batch;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('the bad-input corpus, in process', () => {
  const env = inProcessApp();
  let initial: Awaited<ReturnType<typeof stored>>;

  beforeAll(async () => {
    for (const batch of setupBatches(corpus)) {
      const response = await env.app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth(batch.tenant), 'content-type': 'application/json' },
        body: JSON.stringify({ memories: setupMemories(batch), batch_id: batch.id }),
      });
      expect(response.status, `setup batch ${batch.id}`).toBe(202);
      if (batch.state === 'processing') expect((await waitForStatus(env, batch.tenant, batch.id, ['processing'])).status).toBe('processing');
      else expect((await waitForStatus(env, batch.tenant, batch.id, ['completed', 'failed', 'cancelled'])).status).toBe('completed');
    }
    initial = await stored(env);
    expect(initial.payloads).toBeGreaterThan(0);
  });
  afterAll(() => env.close());

  it.each(corpus.map((c) => [c.name, c] as const))('%s: answers its 4xx and stores nothing', async (_name, c: BadInputCase) => {
    expect(unsafeWebhookTargets(c), 'webhook targets the address check would allow').toEqual([]);
    const before = await stored(env);
    const response = await env.app.request(...caseRequest(c));
    // A dropped upload has nobody left to read the answer; the app still answers it with a client error.
    const problem = await expectProblem(response, c.expectedStatus ?? 400);
    if (c.detailIncludes) expect(problem.detail).toContain(c.detailIncludes);
    if (response.status === 400) {
      expect(problem.errors?.length, 'a validation problem lists its errors').toBeGreaterThan(0);
      for (const issue of problem.errors!) expect(issue).toMatchObject({ path: expect.any(String), message: expect.any(String) });
    }
    expect(await stored(env)).toEqual(before);
    expect((await env.app.request('/healthz')).status).toBe(200);
  });

  it('stored nothing across the whole corpus and logged no unhandled error', async () => {
    expect(await stored(env)).toEqual(initial);
    expect(env.output()).not.toContain('unhandled error');
    expect(env.output()).not.toMatch(/"status":5\d\d/);
    for (const key of Object.values(keyOf)) expect(env.output()).not.toContain(key);
  });
});

describe('the other error paths, in process', () => {
  const env = inProcessApp();
  afterAll(() => env.close());
  const submit = (tenant: 'a' | 'b', body: unknown, headers: Record<string, string> = {}) =>
    env.app.request('/v1/memory/batch', {
      method: 'POST',
      headers: { ...auth(tenant), 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  it('401: asks for a bearer key, on every /v1 route', async () => {
    for (const [path, method] of [['/v1/batch', 'GET'], ['/v1/batch/x', 'GET'], ['/v1/batch/x/cancel', 'POST'], ['/v1/memory/batch', 'POST']] as const) {
      const response = await env.app.request(path, { method });
      await expectProblem(response, 401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="batchmem"');
    }
  });

  it('404: an unknown batch, an unknown route, and a method a route does not take (there is no 405)', async () => {
    expect((await expectProblem(await env.app.request('/v1/batch/nope', { headers: auth('a') }), 404)).detail).toContain('nope');
    await expectProblem(await env.app.request('/v2/batch', { headers: auth('a') }), 404);
    await expectProblem(await env.app.request('/v1/batch/nope', { method: 'DELETE', headers: auth('a') }), 404);
    await expectProblem(await env.app.request('/v1/memory/batch', { method: 'GET', headers: auth('a') }), 404);
  });

  it('409: cancelling a batch that is already final', async () => {
    expect((await submit('a', { memories: [{ content: 'x' }], batch_id: 'done-already' })).status).toBe(202);
    expect((await waitForStatus(env, 'a', 'done-already', ['completed', 'failed', 'cancelled'])).status).toBe('completed');
    const problem = await expectProblem(await env.app.request('/v1/batch/done-already/cancel', { method: 'POST', headers: auth('a') }), 409);
    expect(problem.detail).toContain('already completed');
  });

  it('idempotency replay: a repeated Idempotency-Key answers 200 with the first batch for the same body, 422 for another, and stores nothing more', async () => {
    const first = await submit('a', { memories: [{ content: 'x' }] }, { 'idempotency-key': 'order-7' });
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as { id: string };
    const before = (env.services.payloads as MemoryPayloadStore).objects.size;
    const again = await submit('a', { memories: [{ content: 'x' }] }, { 'idempotency-key': 'order-7' });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    // The key reused for another body is refused, not answered with the old batch (issue 13).
    const different = await expectProblem(await submit('a', { memories: [{ content: 'y' }, { content: 'z' }] }, { 'idempotency-key': 'order-7' }), 422);
    expect(different.detail).toContain('Idempotency-Key');
    expect((env.services.payloads as MemoryPayloadStore).objects.size).toBe(before);
    // Another tenant's same key is its own batch.
    const other = await submit('b', { memories: [{ content: 'x' }] }, { 'idempotency-key': 'order-7' });
    expect(other.status).toBe(202);
  });

  it('the Webhook-Secret header is the secret of a JSON submit and of a single add (none generated in its place)', async () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    const hook = 'https://example.invalid/hook';
    const json = await submit('a', { memories: [{ content: 'x' }], batch_id: 'header-secret', webhook_url: hook }, { 'webhook-secret': secret });
    expect(json.status).toBe(202);
    expect(await json.json()).not.toHaveProperty('webhook_secret');
    expect((await env.services.batches.get(batchKey('org-a', 'header-secret')))?.webhook?.secret).toBe(secret);
    // The same secret in the header and the body is one secret, not a conflict.
    const both = await submit('a', { memories: [{ content: 'y' }], batch_id: 'header-and-body', webhook_url: hook, webhook_secret: secret }, { 'webhook-secret': secret });
    expect(both.status).toBe(202);
    const single = await env.app.request(`/v1/memory?webhook_url=${encodeURIComponent(hook)}`, {
      method: 'POST',
      headers: { ...auth('a'), 'content-type': 'application/json', 'webhook-secret': secret },
      body: JSON.stringify({ content: 'one' }),
    });
    expect([200, 202]).toContain(single.status);
    const { batch_id: singleId } = (await single.json()) as { batch_id: string };
    expect((await env.services.batches.get(batchKey('org-a', singleId)))?.webhook?.secret).toBe(secret);
  });

  it('the edge checks let legitimate requests through: an empty POST to cancel, the JSON route\'s own query, one of each parameter', async () => {
    expect((await submit('a', { memories: [{ content: 'x' }], batch_id: 'plain-cancel' })).status).toBe(202);
    const cancel = await env.app.request('/v1/batch/plain-cancel/cancel', { method: 'POST', headers: { ...auth('a'), 'content-length': '0' } });
    expect([202, 409]).toContain(cancel.status);
    const dry = await env.app.request('/v1/memory/batch?validate_only=true&skip_background_processing=true', {
      method: 'POST',
      headers: { ...auth('a'), 'content-type': 'application/json' },
      body: JSON.stringify({ memories: [{ content: 'x' }] }),
    });
    expect(dry.status).toBe(200);
    expect(await dry.json()).toMatchObject({ valid: true, total: 1 });
    expect((await env.app.request('/v1/batch?limit=2&status=completed', { headers: auth('a') })).status).toBe(200);
  });

  it('400: a bad query on the list and result routes names the parameter', async () => {
    for (const path of ['/v1/batch?limit=0', '/v1/batch?limit=abc', '/v1/batch?status=done', '/v1/batch?cursor=forged']) {
      const problem = await expectProblem(await env.app.request(path, { headers: auth('a') }), 400);
      expect(problem.errors?.length).toBeGreaterThan(0);
    }
    expect((await submit('a', { memories: [{ content: 'x' }], batch_id: 'paged' })).status).toBe(202);
    await expectProblem(await env.app.request('/v1/batch/paged/results?cursor=x', { headers: auth('a') }), 400);
    await expectProblem(await env.app.request('/v1/batch/paged/errors?cursor=-5', { headers: auth('a') }), 400);
  });

  it('503: a batch store that cannot record the batch keeps nothing and says to retry', async () => {
    const batches = new MemoryBatchRepository();
    batches.create = async () => {
      throw new Error('database is locked');
    };
    const failing = inProcessApp({ batches });
    try {
      const response = await failing.app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth('a'), 'content-type': 'application/json' },
        body: JSON.stringify({ memories: [{ content: 'x' }] }),
      });
      await expectProblem(response, 503);
      expect(response.headers.get('retry-after')).toBe('5');
      expect((failing.services.payloads as MemoryPayloadStore).objects.size).toBe(0);
    } finally {
      await failing.orchestrator.close();
    }
  });

  it('500: an unexpected failure answers problem+json with the request id, never the cause', async () => {
    const batches = new MemoryBatchRepository();
    batches.get = async () => {
      throw new Error('secret internals');
    };
    const failing = inProcessApp({ batches });
    try {
      const problem = await expectProblem(await failing.app.request('/v1/batch/any', { headers: auth('a') }), 500);
      expect(problem.detail).toMatch(/request id/);
      expect(problem.detail).not.toContain('secret internals');
    } finally {
      await failing.orchestrator.close();
    }
  });
});
