// Redrive (POST /v1/batch/{id}/retry) on the use cases and the local runner's loop, over the in-memory fakes: the
// lifecycle's reopen, exact counts as failed items move to succeeded, each redrive's outcomes recorded, a new webhook id.
import { describe, expect, it } from 'vitest';
import { reopen, progressVersion } from '../../src/domain/lifecycle.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { deliverWebhook } from '../../src/app/processing/deliver-webhook.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { redeliverWebhook } from '../../src/app/requests/redeliver-webhook.ts';
import { retryBatch } from '../../src/app/requests/retry-batch.ts';
import { listResults } from '../../src/app/requests/read-batches.ts';
import { submitBatch, type SubmitOptions } from '../../src/app/requests/submit-batch.ts';
import type { ItemOutcome } from '../../src/ports/memory-sink.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA, tenantB } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';

/** The fake store, refusing the items whose index ends in 0, 1 or 2 (30%) while `outage` is on. */
class OutageSink extends MemorySinkFake {
  outage = true;
  writes = 0;
  override async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    this.writes += records.length;
    const refused = (r: MemoryRecord) => this.outage && r.index % 10 < 3;
    const good = await super.writeSegment(records.filter((r) => !refused(r)));
    const byIndex = new Map(good.map((o) => [o.index, o]));
    return records.map((r) => byIndex.get(r.index) ?? { index: r.index, ok: false as const, error: 'the memory store is unavailable' });
  }
}

function context() {
  return {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new OutageSink(),
    webhooks: new ScriptedNotifier(),
    clock: systemClock,
    orchestrator: new RecordingOrchestrator(),
    settings: { ...defaultSettings, segmentMaxItems: 25, allowPrivateWebhooks: false },
  } satisfies OrchestratedServices;
}

async function* items(values: unknown[]) {
  yield* values;
}

const memories = (count: number) => Array.from({ length: count }, (_, i) => ({ content: `m${i}`, external_id: `e${i}` }));
const run = (services: ReturnType<typeof context>, key: string) => runBatch(services, key, { workerId: 'w', signal: new AbortController().signal });

async function submitted(services: ReturnType<typeof context>, count: number, options: SubmitOptions = {}) {
  const result = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(memories(count)), options: () => options });
  if (!result.ok) throw new Error(result.error.detail);
  return result.value.batch;
}

describe('reopen (domain)', () => {
  const counts = (succeeded: number, failed: number) => ({ total: 100, processed: succeeded + failed, succeeded, failed });
  it('reopens completed or failed batches with something left to do, and nothing else', () => {
    expect(reopen({ status: 'completed', counts: counts(70, 30) })).toEqual({ ok: true, value: { status: 'processing', completedAt: null, error: null, redrives: 1 } });
    expect(reopen({ status: 'failed', counts: counts(10, 5), redrives: 2 })).toMatchObject({ ok: true, value: { redrives: 3 } });
    expect(reopen({ status: 'completed', counts: counts(100, 0) })).toMatchObject({ ok: false, error: { kind: 'nothing_to_redrive' } });
    for (const status of ['pending', 'processing', 'cancelling', 'cancelled', 'expired'] as const) {
      expect(reopen({ status, counts: counts(70, 30) })).toMatchObject({ ok: false, error: { kind: 'not_redrivable', status } });
    }
  });

  it('keeps the progress version growing through a redrive', () => {
    const final = progressVersion({ status: 'completed', counts: counts(70, 30) });
    const reopened = progressVersion({ status: 'processing', counts: counts(70, 30), redrives: 1 });
    const moved = progressVersion({ status: 'processing', counts: counts(80, 20), redrives: 1 });
    const ended = progressVersion({ status: 'completed', counts: counts(100, 0), redrives: 1 });
    const again = progressVersion({ status: 'processing', counts: counts(100, 0), redrives: 2 });
    expect(final).toBeLessThan(reopened);
    expect(reopened).toBeLessThan(moved);
    expect(moved).toBeLessThan(ended);
    expect(ended).toBeLessThan(again);
  });
});

describe('redrive on the local runner', () => {
  it('after an outage that failed 30%, processes only the failed items again and ends with 100% succeeded and exact counts', async () => {
    const services = context();
    const batch = await submitted(services, 200, { webhookUrl: 'https://example.com/h' });
    await run(services, batch.key);
    const first = (await services.batches.get(batch.key))!;
    expect(first).toMatchObject({ status: 'completed', counts: { total: 200, processed: 200, succeeded: 140, failed: 60 } });
    expect((await deliverWebhook(services, batch.key)).status).toBe('attempted');
    expect(services.sink.writes).toBe(200);

    services.sink.outage = false;
    const retried = await retryBatch(services, tenantA, batch.id);
    expect(retried).toMatchObject({ ok: true, value: { status: 'processing', redrives: 1, completedAt: null, error: null } });
    expect(services.orchestrator.started).toEqual([batch.key]);
    // The redrive's run is scheduled by the batch's organization, as the first run was.
    expect(services.orchestrator.runs.at(-1)).toEqual({ method: 'start', batchKey: batch.key, options: { redrive: 1, organization: tenantA.organization } });
    await run(services, batch.key);
    const done = (await services.batches.get(batch.key))!;
    expect(done).toMatchObject({ status: 'completed', redrives: 1, counts: { total: 200, processed: 200, succeeded: 200, failed: 0 } });
    // Only the 60 failed items were written again; every memory once.
    expect(services.sink.writes).toBe(260);
    expect(services.sink.memories.size).toBe(200);
    expect(await services.batches.listErrors(batch.key, -1, 1000)).toEqual([]);
    expect(await services.batches.listRedriveSegments(batch.key, 1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const results = await listResults(services, tenantA, batch.id, { limit: 1000 });
    expect(results.ok && results.value.items.every((r) => r.status === 'succeeded')).toBe(true);

    // The redrive's end is a second event with an id of its own.
    expect((await deliverWebhook(services, batch.key)).status).toBe('attempted');
    const ids = services.webhooks.sent.map((m) => m.messageId);
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(2);
    expect(services.webhooks.sent[1]!.payload).toMatchObject({ status: 'completed', successful_memories: 200, failed_memories: 0 });
    // Nothing left to retry: 409.
    expect(await retryBatch(services, tenantA, batch.id)).toMatchObject({ ok: false, error: { kind: 'wrong_state', detail: expect.stringContaining('no failed memories') } });
    // Its event sent again: the redelivery is scheduled by the organization too.
    expect((await redeliverWebhook(services, tenantA, batch.id)).ok).toBe(true);
    expect(services.orchestrator.runs.at(-1)).toEqual({ method: 'redeliver', batchKey: batch.key, options: { organization: tenantA.organization } });
  });

  it('a store still failing leaves the items failed with the new error, counts unchanged; a second redrive can still fix them', async () => {
    const services = context();
    const batch = await submitted(services, 50);
    await run(services, batch.key);
    expect((await retryBatch(services, tenantA, batch.id)).ok).toBe(true);
    await run(services, batch.key);
    expect(await services.batches.get(batch.key)).toMatchObject({ status: 'completed', redrives: 1, counts: { processed: 50, succeeded: 35, failed: 15 } });
    services.sink.outage = false;
    expect((await retryBatch(services, tenantA, batch.id)).ok).toBe(true);
    await run(services, batch.key);
    expect(await services.batches.get(batch.key)).toMatchObject({ status: 'completed', redrives: 2, counts: { processed: 50, succeeded: 50, failed: 0 } });
  });

  it('refuses a running batch and another tenant\'s batch; of two retries at once one reopens', async () => {
    const services = context();
    const batch = await submitted(services, 50);
    // Not run yet: pending, then processing.
    expect(await retryBatch(services, tenantA, batch.id)).toMatchObject({ ok: false, error: { kind: 'wrong_state', detail: expect.stringContaining('is pending') } });
    await run(services, batch.key);
    expect(await retryBatch(services, tenantB, batch.id)).toMatchObject({ ok: false, error: { kind: 'not_found' } });
    const both = await Promise.all([retryBatch(services, tenantA, batch.id), retryBatch(services, tenantA, batch.id)]);
    expect(both.filter((r) => r.ok)).toHaveLength(1);
    expect(both.find((r) => !r.ok)).toMatchObject({ error: { kind: 'wrong_state', detail: expect.stringContaining('is processing') } });
    expect(await services.batches.get(batch.key)).toMatchObject({ redrives: 1, status: 'processing' });
  });

  it('a batch stopped by max_failed_items processes, on redrive, its failed items and the segments it never started', async () => {
    const services = context();
    const batch = await submitted(services, 200, { maxFailedItems: 5 });
    await run(services, batch.key);
    const stopped = (await services.batches.get(batch.key))!;
    expect(stopped.status).toBe('failed');
    expect(stopped.counts.processed).toBeLessThan(200);
    services.sink.outage = false;
    expect((await retryBatch(services, tenantA, batch.id)).ok).toBe(true);
    await run(services, batch.key);
    expect(await services.batches.get(batch.key)).toMatchObject({ status: 'completed', error: null, counts: { total: 200, processed: 200, succeeded: 200, failed: 0 } });
    expect(services.sink.memories.size).toBe(200);
  });
});
