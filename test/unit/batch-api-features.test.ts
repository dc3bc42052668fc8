// Result files, completion windows, dry runs, the resumable event stream, batch metadata and delete, through the HTTP
// app in process (`app.request`) on in-memory fakes with the in-process runner.
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { keyring } from '../../src/app/api-keys.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { readEventStream, type EventSourceMessage } from '../../src/app/sse-parser.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { batchKey } from '../../src/domain/batch.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import type { ItemOutcome } from '../../src/ports/memory-sink.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';
import { storedCount } from '../support/stored.ts';

const keyA = 'key-a-0000000000000000000000';
const keyB = 'key-b-0000000000000000000000';

/** A sink that stops answering once `answering` calls have been served, until `release()`. */
class StallingSink extends MemorySinkFake {
  answering = Number.POSITIVE_INFINITY;
  calls = 0;
  #waiting: (() => void)[] = [];
  override async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    this.calls += 1;
    if (this.calls > this.answering) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return super.writeSegment(records);
  }
  release() {
    this.answering = Number.POSITIVE_INFINITY;
    for (const resume of this.#waiting.splice(0)) resume();
  }
}

function setup(options: { start?: boolean; heartbeatMs?: number; settings?: Partial<typeof defaultSettings> } = {}) {
  const sink = new StallingSink();
  const base = {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink,
    webhooks: new ScriptedNotifier(),
    clock: systemClock,
    settings: { ...defaultSettings, segmentMaxItems: 10, allowPrivateWebhooks: true, watchIntervalMs: 10, ...options.settings },
  };
  const orchestrator = new LocalOrchestrator(base, { workerId: 'w', batchConcurrency: 2 });
  const idle = { start: async (key: string) => ({ workflowId: `batch-${key}` }), cancel: async () => undefined, redeliver: async () => undefined, check: async () => undefined, close: async () => undefined };
  const services: OrchestratedServices = { ...base, orchestrator: options.start === false ? idle : orchestrator };
  const app = createHttpApp({
    services,
    keys: keyring([
      { key: keyA, organization: tenantA.organization, namespace: 'ns', user: 'user-a', workspace: 'ws' },
      { key: keyB, organization: 'org-b', namespace: 'ns', user: 'user-b', workspace: 'ws' },
    ]),
    logger: createLogger('silent'),
    metrics: createMetrics(),
    maxJsonBodyBytes: 1024 * 1024,
    eventStream: { heartbeatMs: options.heartbeatMs ?? 15_000, retryMs: 1500 },
  });
  const call = (path: string, init: RequestInit = {}, key = keyA) =>
    app.request(path, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers as Record<string, string>) } });
  const submitJson = (body: unknown, query = '') =>
    call(`/v1/memory/batch${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const submitNdjson = (lines: unknown[], query = '') =>
    call(`/v1/memory/batch${query}`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.map((l) => JSON.stringify(l)).join('\n') });
  const waitFinal = async (id: string) => {
    for (let i = 0; i < 500; i += 1) {
      const batch = (await (await call(`/v1/batch/${id}`)).json()) as { status: string };
      if (['completed', 'failed', 'cancelled', 'expired'].includes(batch.status)) return batch as Record<string, any>;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`batch ${id} never ended`);
  };
  closers.push(() => orchestrator.close());
  return { services, base, sink, orchestrator, app, call, submitJson, submitNdjson, waitFinal };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

const memories = (count: number, from = 0) => Array.from({ length: count }, (_, i) => ({ content: `memory ${from + i}`, external_id: `x${from + i}` }));

describe('batch metadata and completion window at submit', () => {
  it('stores both as sent and returns them in the resource (JSON body and NDJSON query)', async () => {
    const t = setup({ start: false });
    const json = await t.submitJson({ memories: memories(3), batch_id: 'm1', completion_window: '24h', metadata: { job: 'nightly-sync', source: 'crm' } });
    expect(json.status).toBe(202);
    const batch = (await json.json()) as Record<string, any>;
    expect(batch).toMatchObject({ completion_window: '24h', metadata: { job: 'nightly-sync', source: 'crm' }, request_counts: { expired: 0 } });
    expect(Date.parse(batch.expires_at) - Date.parse(batch.created_at)).toBe(86_400_000);

    const ndjson = await t.submitNdjson(memories(2), '?batch_id=m2&completion_window=90m&metadata[job]=nightly-sync&metadata[run]=7');
    expect(ndjson.status).toBe(202);
    expect(await ndjson.json()).toMatchObject({ completion_window: '90m', metadata: { job: 'nightly-sync', run: '7' } });
    const plain = (await (await t.submitJson({ memories: memories(1), batch_id: 'm3' })).json()) as Record<string, any>;
    expect(plain).toMatchObject({ completion_window: null, expires_at: null, metadata: {} });
  });

  it('refuses a bad window or bad metadata with problem+json naming the field, storing nothing', async () => {
    const t = setup({ start: false });
    const cases: [unknown, string][] = [
      [{ completion_window: '1s' }, 'completion_window'],
      [{ completion_window: 24 }, 'completion_window'],
      [{ metadata: { job: 5 } }, 'metadata.job'],
      [{ metadata: ['a'] }, 'metadata'],
      [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
      [{ metadata: { 'a b': 'x' } }, 'metadata.a b'],
    ];
    for (const [extra, path] of cases) {
      const response = await t.submitJson({ memories: memories(2), ...(extra as object) });
      expect(response.status, JSON.stringify(extra)).toBe(400);
      expect(response.headers.get('content-type')).toBe('application/problem+json');
      expect(((await response.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe(path);
    }
    const proto = await t.call('/v1/memory/batch', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"memories":[{"content":"a"}],"metadata":{"__proto__":"x"}}' });
    expect(proto.status).toBe(400);
    expect(t.services.batches instanceof MemoryBatchRepository && t.services.batches.batches.size).toBe(0);
    expect((t.services.payloads as MemoryPayloadStore).objects.size).toBe(0);
  });

  it('filters the list by metadata pairs, within the tenant', async () => {
    const t = setup({ start: false });
    await t.submitJson({ memories: memories(1), batch_id: 'n1', metadata: { job: 'nightly', source: 'crm' } });
    await t.submitJson({ memories: memories(1), batch_id: 'n2', metadata: { job: 'nightly', source: 'erp' } });
    await t.submitJson({ memories: memories(1), batch_id: 'h1', metadata: { job: 'hourly' } });
    const ids = async (query: string, key = keyA) => ((await (await t.call(`/v1/batch${query}`, {}, key)).json()) as { data: { id: string }[] }).data.map((b) => b.id).sort();
    expect(await ids('?metadata[job]=nightly')).toEqual(['n1', 'n2']);
    expect(await ids('?metadata[job]=nightly&metadata[source]=erp')).toEqual(['n2']);
    expect(await ids('?metadata[job]=weekly')).toEqual([]);
    expect(await ids('?metadata[job]=nightly', keyB)).toEqual([]);
    expect(await ids('')).toEqual(['h1', 'n1', 'n2']);
    const bad = await t.call('/v1/batch?metadata[a.b]=x');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe('metadata[a.b]');
  });
});

describe('dry run (?validate_only=true)', () => {
  it('answers valid with the count and stores nothing', async () => {
    const t = setup();
    const response = await t.submitJson({ memories: memories(25), batch_id: 'dry', metadata: { job: 'x' }, completion_window: '1h' }, '?validate_only=true');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ valid: true, total: 25, errors: [] });
    expect((t.services.batches as MemoryBatchRepository).batches.size).toBe(0);
    expect((t.services.payloads as MemoryPayloadStore).objects.size).toBe(0);
  });

  it('reports every bad item with its index and path, the first being the one a real submit names', async () => {
    const t = setup({ start: false });
    const values = [...memories(5), { content: '' }, ...memories(3, 6), { content: 'ok', external_id: 7 }, ...memories(2, 10)];
    const dry = (await (await t.submitJson({ memories: values }, '?validate_only=true')).json()) as { valid: boolean; total: number; errors: { index: number; path: string }[] };
    expect(dry.valid).toBe(false);
    expect(dry.total).toBe(12);
    expect(dry.errors.map((e) => [e.index, e.path])).toEqual([[5, 'memories.5.content'], [9, 'memories.9.external_id']]);
    const real = (await (await t.submitJson({ memories: values })).json()) as { errors: { path: string }[] };
    expect(real.errors[0]!.path).toBe(dry.errors[0]!.path);
  });

  it('keeps the first 100 problems, reads to the end, and gives the line of a line that is not JSON', async () => {
    const t = setup({ start: false });
    const bad = Array.from({ length: 150 }, () => ({ content: '' }));
    const dry = (await (await t.submitNdjson(bad, '?validate_only=true')).json()) as { total: number; errors: unknown[] };
    expect(dry.total).toBe(150);
    expect(dry.errors).toHaveLength(100);
    const lines = await t.call('/v1/memory/batch?validate_only=true', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '{"content":"a"}\n{"content":\n' });
    expect(await lines.json()).toEqual({ valid: false, total: 1, errors: [expect.objectContaining({ line: 2, path: 'line 2' })] });
    const options = (await (await t.submitJson({ memories: memories(1), webhook_url: 'ftp://x.invalid/' }, '?validate_only=true')).json()) as { errors: { path: string }[] };
    expect(options.errors.map((e) => e.path)).toEqual(['webhook_url']);
    expect((await t.call('/v1/memory/batch?validate_only=maybe', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
    expect((t.services.batches as MemoryBatchRepository).batches.size).toBe(0);
  });
});

describe('result files', () => {
  async function finishedBatch(t: ReturnType<typeof setup>, id: string, total: number) {
    // Items holding "reject" fail in the sink: the file carries both outcomes.
    const values = Array.from({ length: total }, (_, i) => ({ content: i % 7 === 3 ? `reject ${i}` : `m ${i}`, external_id: `x${i}` }));
    const sink = t.sink;
    const write = sink.writeSegment.bind(sink);
    sink.writeSegment = async (records) => {
      const ok = await write(records.filter((r) => !r.content.startsWith('reject')));
      const byIndex = new Map(ok.map((o) => [o.index, o]));
      return records.map((r) => byIndex.get(r.index) ?? { index: r.index, ok: false as const, error: 'rejected' });
    };
    expect((await t.submitJson({ memories: values, batch_id: id })).status).toBe(202);
    return t.waitFinal(id);
  }
  const lines = (text: string) => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, any>);

  it('streams one line per item in index order, and the errors file the failed ones', async () => {
    const t = setup();
    const batch = await finishedBatch(t, 'r1', 2345);
    expect(batch.request_counts).toMatchObject({ total: 2345, succeeded: 2010, failed: 335 });
    const response = await t.call('/v1/batch/r1/results.ndjson');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/x-ndjson');
    expect(response.headers.get('etag')).toMatch(/^".+"$/);
    const all = lines(await response.text());
    expect(all.map((l) => l.index)).toEqual(Array.from({ length: 2345 }, (_, i) => i));
    expect(all[3]).toEqual({ index: 3, external_id: 'x3', outcome: 'failed', memory_id: null, memory_outcome: null, error: 'rejected' });
    expect(all[4]).toMatchObject({ index: 4, external_id: 'x4', outcome: 'succeeded', memory_outcome: 'created', error: null });
    expect(new Set(all.filter((l) => l.outcome === 'succeeded').map((l) => l.memory_id)).size).toBe(2010);
    const errors = lines(await (await t.call('/v1/batch/r1/errors.ndjson')).text());
    expect(errors).toHaveLength(335);
    expect(errors.every((l) => l.outcome === 'failed')).toBe(true);
  });

  it('gzips when asked, resumes from an index or a byte range, and refuses a range past the end', async () => {
    const t = setup();
    await finishedBatch(t, 'r2', 1500);
    const plain = await (await t.call('/v1/batch/r2/results.ndjson')).text();
    const gz = await t.call('/v1/batch/r2/results.ndjson', { headers: { 'accept-encoding': 'br;q=1, gzip;q=0.8' } });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(gunzipSync(Buffer.from(await gz.arrayBuffer())).toString('utf8')).toBe(plain);
    const noGzip = await t.call('/v1/batch/r2/results.ndjson', { headers: { 'accept-encoding': 'gzip;q=0' } });
    expect(noGzip.headers.get('content-encoding')).toBeNull();

    const fromIndex = lines(await (await t.call('/v1/batch/r2/results.ndjson?from_index=1234')).text());
    expect(fromIndex[0]!.index).toBe(1234);
    expect(fromIndex).toHaveLength(266);

    const size = Buffer.byteLength(plain);
    const cut = 40_001;
    const tag = (await t.call('/v1/batch/r2/results.ndjson')).headers.get('etag')!;
    const rest = await t.call('/v1/batch/r2/results.ndjson', { headers: { range: `bytes=${cut}-`, 'if-range': tag, 'accept-encoding': 'gzip' } });
    expect(rest.status).toBe(206);
    expect(rest.headers.get('content-range')).toBe(`bytes ${cut}-${size - 1}/${size}`);
    expect(rest.headers.get('content-encoding')).toBeNull();
    expect(Buffer.from(plain).subarray(0, cut).toString('utf8') + (await rest.text())).toBe(plain);
    const middle = await t.call('/v1/batch/r2/results.ndjson', { headers: { range: 'bytes=100-199' } });
    expect(await middle.text()).toBe(Buffer.from(plain).subarray(100, 200).toString('utf8'));
    const stale = await t.call('/v1/batch/r2/results.ndjson', { headers: { range: 'bytes=100-', 'if-range': '"other"' } });
    expect(stale.status).toBe(200);
    const past = await t.call('/v1/batch/r2/results.ndjson', { headers: { range: `bytes=${size}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${size}`);
    expect((await t.call('/v1/batch/r2/results.ndjson?from_index=-1')).status).toBe(400);
    expect((await t.call('/v1/batch/r2/results.ndjson', {}, keyB)).status).toBe(404);
  });
});

describe('completion window on the in-process runner', () => {
  it('expires a batch whose sink stopped answering without waiting for it, and refuses the late outcomes', async () => {
    const t = setup({ start: false });
    t.sink.answering = 3;
    expect((await t.submitJson({ memories: memories(100), batch_id: 'late', completion_window: '1h' })).status).toBe(202);
    const key = batchKey(tenantA.organization, 'late');
    // The window is shortened in the store: the rule under test is the race, not the five-second minimum.
    const repo = t.services.batches as MemoryBatchRepository;
    repo.batches.get(key)!.expiresAt = new Date(Date.now() + 300).toISOString();
    const startedAt = Date.now();
    const end = await runBatch(t.base, key, { workerId: 'w', signal: new AbortController().signal });
    expect(end).toBe('finished');
    // The deadline, then the grace for the stalled write (domain/lifecycle.ts expiryGraceMs), not the stalled write itself.
    expect(Date.now() - startedAt).toBeLessThan(4000);
    const batch = (await (await t.call('/v1/batch/late')).json()) as Record<string, any>;
    expect(batch.status).toBe('expired');
    expect(batch.request_counts).toEqual({ total: 100, processed: 30, succeeded: 30, failed: 0, created: 30, updated: 0, unchanged: 0, expired: 70 });
    expect(batch.error).toContain('completion window of 1h');
    // Papr clients know no expired state: what was not stored counts as failed for them, and the message says why.
    expect(batch).toMatchObject({ code: 200, total_processed: 30, total_successful: 30, total_failed: 70 });
    expect(batch.message).toContain('70 expired');
    t.sink.release();
    await new Promise((r) => setTimeout(r, 50));
    expect((await repo.get(key))!.counts.processed).toBe(30);
    const results = (await (await t.call('/v1/batch/late/errors.ndjson')).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(results.filter((r) => r.outcome === 'expired').length).toBeGreaterThanOrEqual(30);
    // The errors file holds only what did not succeed: no stored memory appears there as expired.
    const all = (await (await t.call('/v1/batch/late/results.ndjson')).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const stored = new Set(all.filter((r) => r.outcome === 'succeeded').map((r) => r.index));
    expect(stored.size).toBeGreaterThanOrEqual(30);
    expect(results.every((r) => r.outcome === 'expired' && !stored.has(r.index))).toBe(true);
    expect(results.length + stored.size).toBe(100);
  });
});

describe('delete', () => {
  it('removes a final batch and its payload, keeps its memories, and refuses a running one', async () => {
    const t = setup({ start: false });
    await t.submitJson({ memories: memories(25), batch_id: 'd1' });
    const running = await t.call('/v1/batch/d1', { method: 'DELETE' });
    expect(running.status).toBe(409);
    expect(running.headers.get('content-type')).toBe('application/problem+json');
    const key = batchKey(tenantA.organization, 'd1');
    await runBatch(t.base, key, { workerId: 'w', signal: new AbortController().signal });
    expect((await t.call('/v1/batch/d1', { method: 'DELETE' }, keyB)).status).toBe(404);
    expect((await t.call('/v1/batch/d1', { method: 'DELETE' })).status).toBe(204);
    expect((await t.call('/v1/batch/d1')).status).toBe(404);
    expect((t.services.payloads as MemoryPayloadStore).objects.size).toBe(0);
    expect(await storedCount(t.services.sink, key)).toBe(25);
    expect((await t.call('/v1/batch/d1', { method: 'DELETE' })).status).toBe(404);
  });
});

describe('event stream', () => {
  async function readAll(response: Response) {
    const events: EventSourceMessage[] = [];
    await readEventStream(response.body!, (event) => events.push(event));
    return events;
  }

  it('uses the progress version as event id, resumes after Last-Event-ID and ends a final batch with one done', async () => {
    const t = setup();
    t.sink.answering = 2;
    await t.submitJson({ memories: memories(50), batch_id: 'e1' });
    // Stalled after two segments: read the stream until the state shows them, then drop the connection.
    const first = await t.call('/v1/batch/e1/events');
    expect(first.headers.get('x-accel-buffering')).toBe('no');
    const reader = first.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!/"processed":20/.test(text)) text += decoder.decode((await reader.read()).value);
    await reader.cancel();
    expect(text.startsWith('retry: 1500\n\n')).toBe(true);
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    const lastId = ids.at(-1)!;
    t.sink.release();
    await t.waitFinal('e1');
    const resumed = await readAll(await t.call('/v1/batch/e1/events', { headers: { 'last-event-id': String(lastId) } }));
    expect(resumed.map((e) => e.event)).toEqual(['done']);
    expect(Number(resumed[0]!.id)).toBeGreaterThan(lastId);
    const done = JSON.parse(resumed[0]!.data) as { progress_version: number; status: string };
    expect(done).toMatchObject({ status: 'completed', progress_version: Number(resumed[0]!.id) });
    const covered = await t.call('/v1/batch/e1/events', { headers: { 'last-event-id': resumed[0]!.id! } });
    expect(covered.status).toBe(204);
    const fresh = await readAll(await t.call('/v1/batch/e1/events'));
    expect(fresh.map((e) => e.event)).toEqual(['done']);
    expect((await t.call('/v1/batch/e1/events', { headers: { 'last-event-id': 'abc' } })).status).toBe(400);
  });

  it('sends a comment line on a quiet stream', async () => {
    const t = setup({ heartbeatMs: 100 });
    t.sink.answering = 0;
    await t.submitJson({ memories: memories(5), batch_id: 'quiet' });
    const response = await t.call('/v1/batch/quiet/events');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const until = Date.now() + 2000;
    while ((text.match(/^: keep-alive$/gm) ?? []).length < 3 && Date.now() < until) text += decoder.decode((await reader.read()).value);
    await reader.cancel();
    expect((text.match(/^: keep-alive$/gm) ?? []).length).toBeGreaterThanOrEqual(3);
    t.sink.release();
  });
});

describe('OpenAPI document', () => {
  it('describes the result files, the resumable stream, delete, the dry run, metadata and the expired state', async () => {
    const t = setup({ start: false });
    const openapi = (await (await t.app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[]; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { properties?: Record<string, any>; enum?: string[] }> };
    };
    expect(Object.keys(openapi.paths['/v1/batch/{id}/results.ndjson']!.get!.responses)).toEqual(expect.arrayContaining(['200', '206', '416']));
    expect(openapi.paths['/v1/batch/{id}/errors.ndjson']!.get).toBeDefined();
    expect(openapi.paths['/v1/batch/{id}/results.ndjson']!.get!.parameters!.map((p) => p.name)).toEqual(expect.arrayContaining(['from_index', 'range']));
    expect(openapi.paths['/v1/batch/{id}/events']!.get!.parameters!.map((p) => p.name)).toContain('last-event-id');
    expect(Object.keys(openapi.paths['/v1/batch/{id}/events']!.get!.responses)).toContain('204');
    expect(Object.keys(openapi.paths['/v1/batch/{id}']!.delete!.responses)).toEqual(expect.arrayContaining(['204', '409']));
    expect(openapi.paths['/v1/batch']!.get!.parameters!.map((p) => p.name)).toContain('metadata');
    expect(openapi.paths['/v1/memory/batch']!.post!.parameters!.map((p) => p.name)).toEqual(expect.arrayContaining(['validate_only', 'completion_window']));
    const batch = openapi.components.schemas.Batch!.properties!;
    expect(batch.status['x-final']).toContain('expired');
    expect(Object.keys(batch)).toEqual(expect.arrayContaining(['completion_window', 'expires_at', 'metadata', 'progress_version']));
    expect(Object.keys(batch.request_counts.properties)).toContain('expired');
    expect(Object.keys(openapi.components.schemas)).toEqual(expect.arrayContaining(['DryRun', 'ResultLine']));
  });
});

describe('POST /v1/batch/{id}/webhook/redeliver', () => {
  it("sends a final batch's event again under the same webhook-id after a 410, with a fresh count of attempts", async () => {
    const t = setup();
    const notifier = t.base.webhooks as ScriptedNotifier;
    notifier.answers.push({ delivered: false, retryable: false, error: 'receiver answered 410' });
    const submitted = await t.submitJson({ memories: memories(3), batch_id: 'hooked', webhook_url: 'https://hooks.example.com/in' });
    expect(submitted.status).toBe(202);
    await t.waitFinal('hooked');
    await t.orchestrator.idle();
    expect(((await (await t.call('/v1/batch/hooked')).json()) as Record<string, any>).webhook).toMatchObject({
      delivered: false, attempts: 1, last_error: 'receiver answered 410',
    });

    const response = await t.call('/v1/batch/hooked/webhook/redeliver', { method: 'POST' });
    expect(response.status).toBe(202);
    expect(((await response.json()) as Record<string, any>).webhook).toMatchObject({ delivered: false, attempts: 0, last_error: null });
    await t.orchestrator.idle();
    expect(((await (await t.call('/v1/batch/hooked')).json()) as Record<string, any>).webhook).toMatchObject({ delivered: true, attempts: 1, last_error: null });
    expect(notifier.sent).toHaveLength(2);
    expect(notifier.sent[1]!.messageId).toBe(notifier.sent[0]!.messageId);
    expect(JSON.stringify(notifier.sent[1]!.payload)).toBe(JSON.stringify(notifier.sent[0]!.payload));

    // Delivered already: sent once more on request, still the same event.
    expect((await t.call('/v1/batch/hooked/webhook/redeliver', { method: 'POST' })).status).toBe(202);
    await t.orchestrator.idle();
    expect(notifier.sent).toHaveLength(3);
    expect(notifier.sent[2]!.messageId).toBe(notifier.sent[0]!.messageId);
  });

  it('is 409 while a delivery of the event is still being retried: two redelivers start one loop, attempts stay within the maximum', async () => {
    const t = setup({ settings: { webhookMaxAttempts: 4, webhookBaseDelayMs: 20, webhookMaxDelayMs: 20 } });
    const notifier = t.base.webhooks as ScriptedNotifier;
    const failing = { delivered: false as const, retryable: true, status: 500, error: 'receiver answered 500' };
    notifier.answers.push(...Array.from({ length: 8 }, () => ({ ...failing })));
    await t.submitJson({ memories: memories(2), batch_id: 'retrying', webhook_url: 'https://hooks.example.com/in' });
    await t.waitFinal('retrying');
    for (let i = 0; i < 500 && notifier.sent.length === 0; i += 1) await new Promise((r) => setTimeout(r, 5));

    // The first loop is between attempts: both redelivers (sent together) are refused, none starts a loop.
    const during = await Promise.all([1, 2].map(() => t.call('/v1/batch/retrying/webhook/redeliver', { method: 'POST' })));
    expect(during.map((r) => r.status)).toEqual([409, 409]);
    expect(during[0]!.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await during[0]!.json()) as { detail: string }).detail).toBe('batch retrying: a delivery is in progress');
    await t.orchestrator.idle();
    const gaveUp = ((await (await t.call('/v1/batch/retrying')).json()) as Record<string, any>).webhook;
    expect(gaveUp).toMatchObject({ delivered: false, attempts: 4, last_error: 'receiver answered 500' });
    expect(notifier.sent).toHaveLength(4);

    // The loop gave up: two concurrent redelivers start exactly one new loop (compare-and-set), the other is 409.
    const after = await Promise.all([1, 2].map(() => t.call('/v1/batch/retrying/webhook/redeliver', { method: 'POST' })));
    expect(after.map((r) => r.status).sort()).toEqual([202, 409]);
    const during2 = await t.call('/v1/batch/retrying/webhook/redeliver', { method: 'POST' });
    expect(during2.status).toBe(409);
    await t.orchestrator.idle();
    expect(notifier.sent).toHaveLength(8);
    expect(((await (await t.call('/v1/batch/retrying')).json()) as Record<string, any>).webhook).toMatchObject({ delivered: false, attempts: 4 });
  });

  it('is 404 for an unknown batch, another tenant\'s, or one without a webhook, and 409 while the batch is not final', async () => {
    const t = setup({ start: false });
    await t.submitJson({ memories: memories(2), batch_id: 'waiting', webhook_url: 'https://hooks.example.com/in' });
    await t.submitJson({ memories: memories(2), batch_id: 'silent' });
    await runBatch(t.services, batchKey(tenantA.organization, 'silent'), { workerId: 'w', signal: new AbortController().signal });
    const problem = async (path: string, key?: string) => {
      const response = await t.call(path, { method: 'POST' }, key);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      return { status: response.status, detail: ((await response.json()) as { detail: string }).detail };
    };
    expect(await problem('/v1/batch/nothing-here/webhook/redeliver')).toEqual({ status: 404, detail: 'batch nothing-here was not found' });
    expect((await problem('/v1/batch/waiting/webhook/redeliver', keyB)).status).toBe(404);
    expect(await problem('/v1/batch/silent/webhook/redeliver')).toEqual({ status: 404, detail: 'a webhook for batch silent was not found' });
    expect(await problem('/v1/batch/waiting/webhook/redeliver')).toEqual({
      status: 409, detail: 'batch waiting is pending; its webhook is sent once it is final',
    });
    const openapi = (await (await t.app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(Object.keys(openapi.paths['/v1/batch/{id}/webhook/redeliver']!.post!.responses)).toEqual(expect.arrayContaining(['202', '404', '409']));
  });
});
