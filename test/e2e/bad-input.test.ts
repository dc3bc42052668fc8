// Every case of the bad-input corpus against the real server process on embedded defaults: each gets its 4xx as
// problem+json, nothing new is stored, and the server serves the next request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, memory } from '../support/api-client.ts';
import { type BadInputCase, holdMarker, loadCorpus, sendAndAbort, sendCase, setupBatches, setupMemories, unsafeWebhookTargets } from '../support/bad-input.ts';
import { memoryRowCount, payloadFileCount, serverErrorCounts } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from './http.suite.ts';

const corpus = loadCorpus();
const maxMemories = 100;

describe('bad-input corpus against the server on embedded defaults', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let clients: Record<'a' | 'b', ApiClient>;
  let initial: Awaited<ReturnType<typeof snapshot>>;

  const snapshot = async () => ({
    a: (await clients.a.all<{ id: string }>('/v1/batch')).map((batch) => batch.id).sort(),
    b: (await clients.b.all<{ id: string }>('/v1/batch')).map((batch) => batch.id).sort(),
    payloadFiles: payloadFileCount(dir.path),
    memories: memoryRowCount(dir.path),
  });

  beforeAll(async () => {
    server = await serverProcess({
      ...commonEnv(keys),
      BATCHMEM_DATA_DIR: dir.path,
      // Private webhooks are refused, as in production: the corpus checks that the refusal happens at submit.
      BATCHMEM_ALLOW_PRIVATE_WEBHOOKS: 'false',
      // Small limits, so that the oversize cases are small and fast.
      BATCHMEM_MAX_JSON_BODY_BYTES: String(64 * 1024),
      BATCHMEM_MAX_NDJSON_BODY_BYTES: String(300 * 1024),
      BATCHMEM_MAX_MEMORIES: String(maxMemories),
      // The corpus's `processing` setup batch stays running: its marked memory's write is held (test support only).
      BATCHMEM_FAULT_HOLD_MARKER: holdMarker,
    });
    await server.start();
    clients = { a: apiClient(server.url, keys[0]!.key), b: apiClient(server.url, keys[1]!.key) };
    // The batches the cases refer to, made once and finished before the snapshot.
    for (const batch of setupBatches(corpus)) {
      const client = clients[batch.tenant];
      const response = await client.submitJson({ memories: setupMemories(batch), batch_id: batch.id });
      expect(response.status, `setup batch ${batch.id}`).toBe(202);
      if (batch.state === 'processing') {
        // expect.poll works inside tests only: a plain wait, bounded.
        let status = '';
        for (let tries = 0; tries < 300 && status !== 'processing'; tries += 1) {
          status = (await client.get(batch.id)).status;
          if (status !== 'processing') await new Promise((resolve) => setTimeout(resolve, 100));
        }
        expect(status, `setup batch ${batch.id} kept running`).toBe('processing');
      }
      else expect((await client.waitForFinal(batch.id)).status).toBe('completed');
    }
    initial = await snapshot();
    expect(initial.payloadFiles).toBeGreaterThan(0);
  });

  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('holds at least 40 cases covering every kind of bad input the issue lists', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(40);
    const covered = corpus.map((c) => c.covers.toLowerCase()).join('\n');
    for (const kind of [
      'malformed json', 'truncated body', 'ndjson with one bad line', 'wrong content type', 'empty content', 'whitespace content',
      'oversize item', 'oversize body', 'too many items', 'invalid utf-8', 'deeply nested metadata', 'huge metadata', '__proto__ keys',
      'numbers where strings belong', 'unknown fields', 'batch_id with path characters', 'header injection in webhook url',
      'webhook url to loopback', 'webhook url to rfc 1918', 'webhook url to link-local', 'webhook url to a metadata address',
      'non-http scheme', 'missing api key', 'wrong api key', "another tenant's batch id (get)", "another tenant's batch id (results)",
      "another tenant's batch id (errors)", "another tenant's batch id (events)", "another tenant's batch id (cancel)",
    ]) {
      expect(covered, `a case covering "${kind}"`).toContain(kind);
    }
  });

  it('would refuse to send a case naming a webhook target the server could call', () => {
    const probe = (url: string): BadInputCase => ({
      name: 'probe', covers: 'probe', method: 'POST', path: '/v1/memory/batch', headers: { 'content-type': 'application/json' },
      auth: 'a', body: JSON.stringify({ memories: [{ content: 'x' }], webhook_url: url }), expectedStatus: 400,
    });
    expect(unsafeWebhookTargets(probe('https://example.com/hook'))).toEqual(['https://example.com/hook']);
    expect(unsafeWebhookTargets(probe('http://10.0.0.1/hook'))).toEqual([]);
    expect(unsafeWebhookTargets(probe('https://example.invalid/hook'))).toEqual([]);
  });

  it.each(corpus.map((c) => [c.name, c] as const))('%s: answers its 4xx, stores nothing and keeps serving', async (_name, c: BadInputCase) => {
    // Never hand the server a webhook target it could call: only refused addresses and unresolvable names.
    expect(unsafeWebhookTargets(c), 'webhook targets the address check would allow').toEqual([]);
    const keyOf = { a: keys[0]!.key, b: keys[1]!.key };
    const before = await snapshot();

    if (c.expectedStatus === null) {
      const outputBefore = server.output().length;
      await sendAndAbort(server.url, c, keyOf);
      // The server logs every request it finishes, aborted or not; wait for this one.
      await expect.poll(() => server.output().slice(outputBefore), { timeout: 10_000 }).toMatch(/"route":"\/v1\/memory\/batch","status":4\d\d/);
    } else {
      const response = await sendCase(server.url, c, keyOf);
      const text = await response.text();
      expect(response.status, text).toBe(c.expectedStatus);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = JSON.parse(text) as { type: unknown; title: unknown; status: unknown; detail: unknown; errors?: unknown };
      expect(problem).toMatchObject({ type: expect.stringMatching(/^https?:\/\//), title: expect.any(String), status: c.expectedStatus });
      expect(typeof problem.detail === 'string' && problem.detail.length > 0).toBe(true);
      if (c.detailIncludes) expect(problem.detail).toContain(c.detailIncludes);
      if (c.expectedStatus === 400) {
        expect(Array.isArray(problem.errors) && problem.errors.length > 0, 'a validation problem lists its errors').toBe(true);
        for (const issue of problem.errors as unknown[]) expect(issue).toMatchObject({ path: expect.any(String), message: expect.any(String) });
      }
      for (const key of Object.values(keyOf)) expect(text).not.toContain(key);
    }

    expect(await snapshot()).toEqual(before);
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
  });

  // A dry run of every submit case: a case a real submit refuses as invalid (400) is reported in a 200 answer whose
  // first error has the same path (and index) as the real problem's; every other refusal is the same status.
  const submitCases = corpus.filter((c) => c.method === 'POST' && c.path === '/v1/memory/batch' && c.expectedStatus !== null && c.query?.validate_only === undefined);
  it.each(submitCases.map((c) => [c.name, c] as const))('%s: a dry run reports what the real submit names, storing nothing', async (_name, c: BadInputCase) => {
    expect(unsafeWebhookTargets(c)).toEqual([]);
    const keyOf = { a: keys[0]!.key, b: keys[1]!.key };
    const before = await snapshot();
    const real = await sendCase(server.url, c, keyOf);
    const realProblem = (await real.json()) as { errors?: { path: string }[] };
    const dryCase: BadInputCase = { ...c, query: { ...c.query, validate_only: 'true' } };
    const dry = await sendCase(server.url, dryCase, keyOf);
    if (real.status === 400) {
      expect(dry.status).toBe(200);
      const report = (await dry.json()) as { valid: boolean; errors: { path: string; index?: number }[] };
      expect(report.valid).toBe(false);
      expect(report.errors.length).toBeGreaterThan(0);
      expect(report.errors[0]!.path).toBe(realProblem.errors![0]!.path);
      const index = /^memories\.(\d+)/.exec(realProblem.errors![0]!.path)?.[1];
      if (index !== undefined) expect(report.errors[0]!.index).toBe(Number(index));
    } else {
      expect(dry.status).toBe(real.status);
      expect(dry.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('a dry run of a good body answers valid and stores nothing', async () => {
    const before = await snapshot();
    const response = await clients.a.request('/v1/memory/batch?validate_only=true', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ memories: [memory(1), memory(2), memory(3)], batch_id: 'dry-run-only', metadata: { job: 'x' }, completion_window: '1h' }),
    });
    expect(await response.json()).toEqual({ valid: true, total: 3, errors: [] });
    expect((await clients.a.request('/v1/batch/dry-run-only')).status).toBe(404);
    expect(await snapshot()).toEqual(before);
  });

  it('stored nothing across the whole corpus', async () => {
    expect(await snapshot()).toEqual(initial);
  });

  it('answered no request with a 5xx and logged no unhandled error', async () => {
    expect(await serverErrorCounts(server.url)).toEqual({});
    expect(server.output()).not.toContain('unhandled error');
  });

  it("left the other tenant's batch as it was, though a cancel of it was tried", async () => {
    const own = await clients.b.get('owned-by-b');
    expect(own.status).toBe('completed');
    expect(own.request_counts).toEqual({ total: 2, processed: 2, succeeded: 2, failed: 0, created: 2, updated: 0, unchanged: 0, expired: 0 });
  });

  it('accepts a good submission afterwards', async () => {
    const response = await clients.a.submitJson({ memories: [memory(1)] });
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    expect((await clients.a.waitForFinal(id)).status).toBe('completed');
  });

  it('wrote no API key to its output', () => {
    for (const { key } of keys) expect(server.output()).not.toContain(key);
  });
});
