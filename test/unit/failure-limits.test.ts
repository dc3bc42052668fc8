// Tolerated failures (max_failed_items, max_failed_percent): the domain rule and the local runner stopping on it.
import { describe, expect, it } from 'vitest';
import { failureLimitExceeded, parseFailureLimits } from '../../src/domain/failure-limits.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { submitBatch, type SubmitOptions } from '../../src/app/requests/submit-batch.ts';
import type { ItemOutcome } from '../../src/ports/memory-sink.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';

const counts = (failed: number, total: number) => ({ total, processed: failed, succeeded: 0, failed });

describe('failure limits (domain)', () => {
  it('accepts whole item counts and percentages with up to 4 decimals, and nothing else', () => {
    expect(parseFailureLimits({})).toEqual({ ok: true, limits: null });
    expect(parseFailureLimits({ maxFailedItems: 0 })).toEqual({ ok: true, limits: { maxFailedItems: 0, maxFailedPercent: null } });
    expect(parseFailureLimits({ maxFailedPercent: 2.5 })).toEqual({ ok: true, limits: { maxFailedItems: null, maxFailedPercent: 2.5 } });
    for (const bad of [-1, 1.5, '10', 1_000_000_001, Number.NaN, true]) {
      expect(parseFailureLimits({ maxFailedItems: bad })).toMatchObject({ ok: false, issues: [{ path: 'max_failed_items' }] });
    }
    for (const bad of [-0.1, 100.01, '1', 0.00001, Number.POSITIVE_INFINITY, {}]) {
      expect(parseFailureLimits({ maxFailedPercent: bad })).toMatchObject({ ok: false, issues: [{ path: 'max_failed_percent' }] });
    }
  });

  it('is exceeded only past the limit: the 11th failure of max 10, the 201st of 1% of 20,000', () => {
    const items = { maxFailedItems: 10, maxFailedPercent: null };
    expect(failureLimitExceeded(counts(10, 1000), items)).toBeUndefined();
    expect(failureLimitExceeded(counts(11, 1000), items)).toMatch(/11 memories failed, more than max_failed_items 10/);
    const percent = { maxFailedItems: null, maxFailedPercent: 1 };
    expect(failureLimitExceeded(counts(200, 20_000), percent)).toBeUndefined();
    expect(failureLimitExceeded(counts(201, 20_000), percent)).toMatch(/201 memories failed \(1\.01% of 20000\), more than max_failed_percent 1/);
    expect(failureLimitExceeded(counts(1, 3), { maxFailedItems: null, maxFailedPercent: 33.3334 })).toBeUndefined();
    expect(failureLimitExceeded(counts(1, 3), { maxFailedItems: null, maxFailedPercent: 33.3333 })).toBeDefined();
    expect(failureLimitExceeded(counts(1, 3), { maxFailedItems: 0, maxFailedPercent: null })).toMatch(/^1 memory failed, more than max_failed_items 0/);
    expect(failureLimitExceeded(counts(0, 5), { maxFailedItems: 0, maxFailedPercent: 0 })).toBeUndefined();
    expect(failureLimitExceeded(counts(1, 5), { maxFailedItems: 0, maxFailedPercent: null })).toBeDefined();
    expect(failureLimitExceeded(counts(5000, 5000), null)).toBeUndefined();
  });
});

/** The fake sink, rejecting every item whose content contains "bad", counting calls and the most in flight at once. */
class RejectingSink extends MemorySinkFake {
  calls = 0;
  inFlight = 0;
  override async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    this.calls += 1;
    this.inFlight += 1;
    try {
      await new Promise((resolve) => setTimeout(resolve, 2));
      const good = await super.writeSegment(records.filter((r) => !r.content.includes('bad')));
      const byIndex = new Map(good.map((o) => [o.index, o]));
      return records.map((r) => byIndex.get(r.index) ?? { index: r.index, ok: false as const, error: 'rejected: bad content' });
    } finally {
      this.inFlight -= 1;
    }
  }
}

function context() {
  return {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new RejectingSink(),
    webhooks: new ScriptedNotifier(),
    clock: systemClock,
    orchestrator: new RecordingOrchestrator(),
    settings: { ...defaultSettings, segmentMaxItems: 20, segmentConcurrency: 4 },
  } satisfies OrchestratedServices;
}

async function* items(values: unknown[]) {
  yield* values;
}

/** `count` memories, every 20th one rejected by the sink: 5% of the items, one per segment of 20. */
const fivePercentBad = (count: number) => Array.from({ length: count }, (_, i) => ({ content: i % 20 === 7 ? `bad ${i}` : `good ${i}` }));

async function submitAndRun(services: ReturnType<typeof context>, values: unknown[], options: SubmitOptions) {
  const submitted = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(values), options: () => options });
  if (!submitted.ok) throw new Error(submitted.error.detail);
  await runBatch(services, submitted.value.batch.key, { workerId: 'w', signal: new AbortController().signal });
  return (await services.batches.get(submitted.value.batch.key))!;
}

describe('tolerated failures on the local runner', () => {
  it('a sink failing 5% with max_failed_percent 1 ends failed, having started no segment after the limit was passed', async () => {
    const services = context();
    // 2,000 items in 100 segments of 20; 1% is 20 failures, so the 21st failed item (the 21st segment) passes it.
    const batch = await submitAndRun(services, fivePercentBad(2000), { maxFailedPercent: 1 });
    expect(batch.status).toBe('failed');
    expect(batch.error).toMatch(/21 memories failed|memories failed \(1\.\d+% of 2000\), more than max_failed_percent 1/);
    const segments = await services.batches.listSegments(batch.key);
    // Segments in flight when the 21st was recorded: at most the concurrency (4), the crossing one among them.
    expect(services.sink.calls).toBe(segments.length);
    expect(segments.length).toBeGreaterThanOrEqual(21);
    expect(segments.length).toBeLessThanOrEqual(21 + services.settings.segmentConcurrency - 1);
    expect(batch.counts).toEqual({ total: 2000, processed: segments.length * 20, succeeded: segments.length * 19, failed: segments.length });
  });

  it('max_failed_items stops at the first failure past it; a batch within its limits completes', async () => {
    const stopped = await submitAndRun(context(), fivePercentBad(400), { maxFailedItems: 2 });
    expect(stopped).toMatchObject({ status: 'failed', error: expect.stringMatching(/^\d+ memories failed, more than max_failed_items 2/) });
    expect(stopped.counts.processed).toBeLessThan(400);
    const within = await submitAndRun(context(), fivePercentBad(400), { maxFailedItems: 20, maxFailedPercent: 5 });
    expect(within).toMatchObject({ status: 'completed', error: null, counts: { total: 400, processed: 400, failed: 20 } });
    expect(within.failureLimits).toEqual({ maxFailedItems: 20, maxFailedPercent: 5 });
  });
});
