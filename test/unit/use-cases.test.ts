import { segmentKey } from '../../src/domain/codec.ts';
import { describe, expect, it } from 'vitest';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { AppFailure, validation } from '../../src/app/errors.ts';
import { cancelBatch } from '../../src/app/requests/cancel-batch.ts';
import { deliverWebhook, webhookDelayMs } from '../../src/app/processing/deliver-webhook.ts';
import { listResults } from '../../src/app/requests/read-batches.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { processSegment } from '../../src/app/processing/process-segment.ts';
import { checkWebhookSecret, submitBatch, type SubmitOptions } from '../../src/app/requests/submit-batch.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA, tenantB } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';

function context(notifier = new ScriptedNotifier()) {
  const services = {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new MemorySinkFake(),
    webhooks: notifier,
    clock: systemClock,
    orchestrator: new RecordingOrchestrator(),
    settings: { ...defaultSettings, segmentMaxItems: 10, allowPrivateWebhooks: false },
  } satisfies OrchestratedServices;
  return services;
}

async function* items(values: unknown[]) {
  yield* values;
}

const memories = (count: number) => Array.from({ length: count }, (_, i) => ({ content: `m${i}` }));

async function submit(services: ReturnType<typeof context>, values: unknown[], options: SubmitOptions = {}) {
  return submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(values), options: () => options });
}

describe('submitBatch', () => {
  it('stores segments, records the batch and starts it by key only', async () => {
    const services = context();
    const result = await submit(services, memories(25), { batchId: 'b1' });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.batch).toMatchObject({ id: 'b1', status: 'pending', counts: { total: 25 }, payload: { segments: 3 } });
    expect(services.payloads.objects.size).toBe(3);
    expect(services.orchestrator.started).toEqual([result.value.batch.key]);
    // Scheduled by its organization (Temporal's fairness key); the run's input is still the key alone.
    expect(services.orchestrator.runs).toEqual([{ method: 'start', batchKey: result.value.batch.key, options: { organization: tenantA.organization } }]);
    expect(result.value.batch.workflowId).toBe(`batch-${result.value.batch.key}`);
  });

  it('rejects a bad item anywhere, names its index and deletes the segments already written', async () => {
    const services = context();
    const values = [...memories(35), { content: '' }];
    const result = await submit(services, values);
    expect(result).toMatchObject({ ok: false, error: { kind: 'validation' } });
    if (!result.ok) expect(result.error.detail).toContain('memory 35');
    expect(services.payloads.objects.size).toBe(0);
    expect(services.batches.batches.size).toBe(0);
  });

  it('turns a failure thrown by the body reader into its error, leaving nothing stored', async () => {
    const services = context();
    async function* broken() {
      yield* memories(15);
      throw new AppFailure(validation('line 16 is not valid JSON'));
    }
    const result = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: broken(), options: () => ({}) });
    expect(result).toMatchObject({ ok: false, error: { detail: 'line 16 is not valid JSON' } });
    expect(services.payloads.objects.size).toBe(0);
  });

  it('refuses an empty batch, too many memories and a private webhook', async () => {
    const services = context();
    services.settings.maxMemoriesPerBatch = 5;
    expect(await submit(services, [])).toMatchObject({ ok: false, error: { kind: 'validation' } });
    expect(await submit(services, memories(6))).toMatchObject({ ok: false, error: { kind: 'too_large' } });
    expect(await submit(services, memories(2), { webhookUrl: 'http://10.1.2.3/hook' })).toMatchObject({ ok: false, error: { kind: 'validation' } });
    expect(services.payloads.objects.size).toBe(0);
  });

  it('generates a webhook secret when none is given, and checks a given one', async () => {
    const services = context();
    const generated = await submit(services, memories(1), { webhookUrl: 'https://example.com/h' });
    expect(generated.ok && generated.value.generatedSecret).toMatch(/^whsec_/);
    expect(checkWebhookSecret(generated.ok ? generated.value.generatedSecret! : '')).toBeUndefined();
    expect(checkWebhookSecret('whsec_' + Buffer.alloc(10).toString('base64'))).toMatch(/24 to 64 bytes/);
    const bad = await submit(services, memories(1), { webhookUrl: 'https://example.com/h', webhookSecret: 'not-a-secret' });
    expect(bad).toMatchObject({ ok: false, error: { kind: 'validation' } });
  });

  it('returns the existing batch for a repeated batch id and keeps one copy of the payload', async () => {
    const services = context();
    const first = await submit(services, memories(12), { batchId: 'same' });
    const second = await submit(services, memories(30), { batchId: 'same' });
    expect(second.ok && second.value.created).toBe(false);
    expect(second.ok && second.value.batch.counts.total).toBe(12);
    expect(first.ok && services.payloads.objects.size).toBe(2);
  });
});

describe('running a batch', () => {
  it('processes every segment, completes with exact counts, and ignores a repeated segment', async () => {
    const services = context();
    const submitted = await submit(services, memories(95));
    if (!submitted.ok) throw new Error('submit failed');
    const key = submitted.value.batch.key;
    expect(await runBatch(services, key, { workerId: 'w', signal: new AbortController().signal })).toBe('finished');
    const repeat = await processSegment(services, { key, segment: 3, workerId: 'w' });
    expect(repeat).toMatchObject({ ok: true, value: { status: 'skipped' } });
    const batch = await services.batches.get(key);
    expect(batch).toMatchObject({ status: 'completed', counts: { total: 95, processed: 95, succeeded: 95, failed: 0 } });
    expect(services.sink.memories.size).toBe(95);
    const page = await listResults(services, tenantA, submitted.value.batch.id, { limit: 40 });
    expect(page.ok && page.value.items.map((r) => r.index)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(page.ok && page.value.nextCursor).toBe('39');
  });

  it('fails the batch when a segment is corrupt, naming the segment, and stores none of its memories', async () => {
    const services = context();
    const submitted = await submit(services, memories(30));
    if (!submitted.ok) throw new Error('submit failed');
    // Segment 1 by its name: segments are stored two at a time, so the store's insertion order is not theirs.
    const { prefix, codec } = submitted.value.batch.payload;
    const name = segmentKey(prefix, 1, codec);
    const bytes = services.payloads.objects.get(name)!;
    bytes[bytes.length - 3]! ^= 0x40;
    // Keep the store's checksum in step, so the segment's own SHA-256 is what catches the flip.
    services.payloads.checksums.set(name, (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex'));
    await runBatch(services, submitted.value.batch.key, { workerId: 'w', signal: new AbortController().signal });
    const batch = await services.batches.get(submitted.value.batch.key);
    expect(batch?.status).toBe('failed');
    expect(batch?.error).toContain(name);
    expect(batch?.error).toMatch(/checksum/i);
    expect([...services.sink.memories.values()].some((m) => m.index >= 10 && m.index < 20)).toBe(false);
  });

  it('cancels: the batch ends cancelled and another tenant cannot cancel it', async () => {
    const services = context();
    const submitted = await submit(services, memories(30), { batchId: 'c' });
    if (!submitted.ok) throw new Error('submit failed');
    expect(await cancelBatch(services, tenantB, 'c')).toMatchObject({ ok: false, error: { kind: 'not_found' } });
    expect(await cancelBatch(services, tenantA, 'c')).toMatchObject({ ok: true, value: { status: 'cancelling' } });
    await runBatch(services, submitted.value.batch.key, { workerId: 'w', signal: new AbortController().signal });
    expect((await services.batches.get(submitted.value.batch.key))?.status).toBe('cancelled');
    expect(await cancelBatch(services, tenantA, 'c')).toMatchObject({ ok: false, error: { kind: 'wrong_state' } });
  });
});

describe('webhook delivery', () => {
  it('sends one logical event with a stable id and records every attempt', async () => {
    const notifier = new ScriptedNotifier([{ delivered: false, error: 'receiver answered 500', retryable: true }]);
    const services = context(notifier);
    const submitted = await submit(services, memories(5), { webhookUrl: 'https://example.com/h' });
    if (!submitted.ok) throw new Error('submit failed');
    const key = submitted.value.batch.key;
    await runBatch(services, key, { workerId: 'w', signal: new AbortController().signal });
    expect(await deliverWebhook(services, key)).toMatchObject({ status: 'attempted', attempt: { delivered: false } });
    expect(await deliverWebhook(services, key)).toMatchObject({ status: 'attempted', attempt: { delivered: true } });
    expect(await deliverWebhook(services, key)).toEqual({ status: 'nothing_to_send' });
    expect(new Set(notifier.sent.map((m) => m.messageId)).size).toBe(1);
    expect(notifier.sent[0]!.payload.type).toBe('batch.completed');
    expect(JSON.stringify(notifier.sent[0]!.payload)).not.toContain(submitted.value.generatedSecret!);
    expect((await services.batches.get(key))?.webhook).toMatchObject({ delivered: true, attempts: 2, lastError: null });
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(webhookDelayMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(webhookDelayMs(3, 1000, 60_000, () => 1)).toBe(4000);
    expect(webhookDelayMs(20, 1000, 60_000, () => 1)).toBe(60_000);
  });
});

describe('webhook events (issue 15)', () => {
  it('sends byte-identical bodies on every attempt of one event, whatever the delivery state on the batch', async () => {
    const notifier = new ScriptedNotifier([
      { delivered: false, retryable: true, error: 'receiver answered 503' },
      { delivered: false, retryable: true, error: 'receiver answered 429' },
    ]);
    const services = context(notifier);
    const submitted = await submit(services, memories(5), { webhookUrl: 'https://example.com/h' });
    if (!submitted.ok) throw new Error('submit failed');
    const key = submitted.value.batch.key;
    await runBatch(services, key, { workerId: 'w', signal: new AbortController().signal });
    for (let attempt = 0; attempt < 3; attempt += 1) expect((await deliverWebhook(services, key)).status).toBe('attempted');
    expect(notifier.sent).toHaveLength(3);
    expect(new Set(notifier.sent.map((message) => JSON.stringify(message.payload))).size).toBe(1);
    expect(new Set(notifier.sent.map((message) => message.messageId)).size).toBe(1);
    expect((await services.batches.get(key))!.webhook).toMatchObject({ delivered: true, attempts: 3, lastError: null });
  });
});
