import { describe, expect, it } from 'vitest';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { deliverWebhook } from '../../src/app/processing/deliver-webhook.ts';
import { expireBatch } from '../../src/app/processing/expire-batch.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';

/** Fails its first `failures` writes, as a sink that is briefly down. */
class FlakySink extends MemorySinkFake {
  failures: number;
  constructor(failures: number) {
    super();
    this.failures = failures;
  }
  override async writeSegment(records: MemoryRecord[]) {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('sink unavailable');
    }
    return super.writeSegment(records);
  }
}

/** The value of one sample in Prometheus text, or undefined when the series is absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics from the use cases', () => {
  it('counts batches by status, items, segment failures, sink writes, payload bytes and webhook attempts', async () => {
    const metrics = createMetrics();
    const services = {
      batches: new MemoryBatchRepository(),
      payloads: new MemoryPayloadStore(),
      sink: new FlakySink(2),
      webhooks: new ScriptedNotifier([{ delivered: false, error: 'HTTP 503', retryable: true }, { delivered: true, status: 204 }]),
      clock: systemClock,
      orchestrator: new RecordingOrchestrator(),
      settings: { ...defaultSettings, segmentMaxItems: 10, allowPrivateWebhooks: false },
      observer: metrics,
    } satisfies OrchestratedServices;
    const before = await metrics.registry.metrics();
    // Every labelled series exists at zero before anything happened, so rates and alerts always have data.
    expect(sample(before, 'batchmem_items_total', 'outcome="succeeded"')).toBe(0);
    expect(sample(before, 'batchmem_webhook_attempts_total', 'result="rejected"')).toBe(0);
    expect(sample(before, 'batchmem_segment_failures_total', 'kind="error"')).toBe(0);

    async function* items() {
      for (let i = 0; i < 25; i += 1) yield { content: `memory ${i}` };
    }
    const submitted = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(), options: () => ({ webhookUrl: 'https://example.com/h' }) });
    if (!submitted.ok) throw new Error(submitted.error.detail);
    const { batch } = submitted.value;
    metrics.batchSubmitted({ rawBytes: batch.payload.rawBytes, storedBytes: batch.payload.storedBytes, memories: 25 });
    expect(await runBatch(services, batch.key, { workerId: 'w', signal: new AbortController().signal })).toBe('finished');
    await deliverWebhook(services, batch.key);
    await deliverWebhook(services, batch.key);

    const text = await metrics.registry.metrics();
    expect(sample(text, 'batchmem_batches_total', 'status="pending"')).toBe(1);
    expect(sample(text, 'batchmem_memories_submitted_total')).toBe(25);
    expect(sample(text, 'batchmem_batches_total', 'status="processing"')).toBe(1);
    expect(sample(text, 'batchmem_batches_total', 'status="completed"')).toBe(1);
    expect(sample(text, 'batchmem_items_total', 'outcome="succeeded"')).toBe(25);
    expect(sample(text, 'batchmem_segment_duration_seconds_count')).toBe(3);
    expect(sample(text, 'batchmem_segment_failures_total', 'kind="error"')).toBe(2);
    expect(sample(text, 'batchmem_sink_write_duration_seconds_count', 'result="error"')).toBe(2);
    expect(sample(text, 'batchmem_sink_write_duration_seconds_count', 'result="ok"')).toBe(3);
    expect(sample(text, 'batchmem_batch_payload_bytes_sum', 'form="raw"')).toBe(batch.payload.rawBytes);
    expect(sample(text, 'batchmem_batch_payload_bytes_sum', 'form="stored"')).toBe(batch.payload.storedBytes);
    expect(sample(text, 'batchmem_webhook_attempts_total', 'result="failed"')).toBe(1);
    expect(sample(text, 'batchmem_webhook_attempts_total', 'result="delivered"')).toBe(1);
  });

  it('counts the items of an expired batch that were never processed as expired', async () => {
    const metrics = createMetrics();
    const services = {
      batches: new MemoryBatchRepository(),
      payloads: new MemoryPayloadStore(),
      sink: new MemorySinkFake(),
      webhooks: new ScriptedNotifier([]),
      clock: systemClock,
      orchestrator: new RecordingOrchestrator(),
      settings: { ...defaultSettings, segmentMaxItems: 10 },
      observer: metrics,
    } satisfies OrchestratedServices;
    async function* items() {
      for (let i = 0; i < 25; i += 1) yield { content: `memory ${i}` };
    }
    const submitted = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(), options: () => ({ completionWindow: '1h' }) });
    if (!submitted.ok) throw new Error(submitted.error.detail);
    const expired = await expireBatch(services, submitted.value.batch.key);
    expect(expired?.status).toBe('expired');
    const text = await metrics.registry.metrics();
    expect(sample(text, 'batchmem_batches_total', 'status="expired"')).toBe(1);
    expect(sample(text, 'batchmem_items_total', 'outcome="expired"')).toBe(25);
  });

  it('reports the backlog gauges from one store read per interval, and NaN when the store cannot answer', async () => {
    const metrics = createMetrics();
    let now = Date.parse('2026-01-01T00:10:00Z');
    let reads = 0;
    let failing = false;
    metrics.trackBacklog(
      async () => {
        reads += 1;
        if (failing) throw new Error('store down');
        return { byStatus: { pending: 3, processing: 2, cancelling: 1 }, oldestCreatedAt: '2026-01-01T00:00:00.000Z' };
      },
      { minIntervalMs: 5000, now: () => now },
    );
    const text = await metrics.registry.metrics();
    expect(sample(text, 'batchmem_batches_waiting')).toBe(3);
    expect(sample(text, 'batchmem_batches_running')).toBe(3);
    expect(sample(text, 'batchmem_oldest_unfinished_batch_age_seconds')).toBe(600);
    await metrics.registry.metrics();
    expect(reads).toBe(1);
    now += 5000;
    failing = true;
    const down = await metrics.registry.metrics();
    expect(reads).toBe(2);
    expect(sample(down, 'batchmem_batches_waiting')).toBeNaN();
  });
});
