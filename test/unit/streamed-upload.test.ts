// invalid_items: record through the use cases on the fakes: a streamed upload is recorded and started with its
// first segment and grows as it streams; invalid items fail in their place; a body that breaks off part-way, or an
// upload that stores nothing for too long, leaves a cancelled batch with what it processed.
import { describe, expect, it } from 'vitest';
import { AppFailure, validation } from '../../src/app/errors.ts';
import { awaitSegments } from '../../src/app/processing/await-segments.ts';
import { runBatch } from '../../src/app/processing/run-batch.ts';
import { submitBatch, type SubmitOptions } from '../../src/app/requests/submit-batch.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import { UnreadableItem } from '../../src/domain/invalid-items.ts';
import { uploadStallMs } from '../../src/domain/lifecycle.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { newBatch, tenantA } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';

function services(clock = systemClock) {
  return {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new MemorySinkFake(),
    webhooks: new ScriptedNotifier(),
    clock,
    orchestrator: new RecordingOrchestrator(),
    settings: { ...defaultSettings, segmentMaxItems: 10 },
  } satisfies OrchestratedServices;
}

const valid = (i: number) => ({ content: `memory ${i}`, external_id: `e-${i}` });

describe('a streamed upload with invalid_items: record', () => {
  it('is recorded and started with its first segment, grows while it streams, and fails its invalid items in place', async () => {
    const s = services();
    const seen: { received: number; complete: boolean | undefined; started: number }[] = [];
    let line = 0;
    async function* body() {
      for (let i = 0; i < 35; i += 1) {
        line = i + 1;
        if (i % 10 === 0) {
          const batch = await s.batches.get((await s.batches.list(tenantA.organization, { limit: 1 })).items[0]?.key ?? '');
          seen.push({ received: batch?.counts.total ?? 0, complete: batch?.upload?.complete, started: s.orchestrator.started.length });
        }
        if (i === 4) yield { content: '', external_id: 'bad-4' };
        else if (i === 13) yield new UnreadableItem([{ path: '', message: 'is not valid JSON: Unexpected end' }]);
        else if (i === 22) yield { content: 'x', organization_id: 'someone-else' };
        else yield valid(i);
      }
    }
    const options: SubmitOptions = { batchId: 'streamed', invalidItems: 'record' };
    const submitted = await submitBatch(s, { tenant: tenantA, requestId: 'r', items: body(), options: () => options, optionsUpFront: true, position: () => `line ${line}` });
    expect(submitted.ok).toBe(true);
    // Before the first segment nothing is recorded; after it the batch exists, started, with its upload open.
    expect(seen).toEqual([
      { received: 0, complete: undefined, started: 0 },
      { received: 10, complete: false, started: 1 },
      { received: 20, complete: false, started: 1 },
      { received: 30, complete: false, started: 1 },
    ]);
    const key = submitted.ok ? submitted.value.batch.key : '';
    expect(await s.batches.get(key)).toMatchObject({ invalidItems: 'record', upload: { complete: true, received: 35 }, counts: { total: 35 }, payload: { segments: 4 } });
    await runBatch(s, key, { workerId: 'w', signal: new AbortController().signal });
    expect(await s.batches.get(key)).toMatchObject({ status: 'completed', counts: { total: 35, processed: 35, succeeded: 32, failed: 3 } });
    const errors = await s.batches.listErrors(key, -1, 100);
    expect(errors.map((e) => [e.index, e.externalId])).toEqual([[4, 'bad-4'], [13, null], [22, null]]);
    expect(errors[0]!.error).toBe('line 5 is invalid: memories.4.content must not be empty or only whitespace');
    expect(errors[1]!.error).toBe('line 14 is invalid: is not valid JSON: Unexpected end');
    expect(errors[2]!.error).toMatch(/^line 23 is invalid: memories\.22\.organization_id /);
    expect(s.sink.memories.size).toBe(32);
  });

  it('runs segments as they are stored: a runner started with the first one waits for the rest until the upload ends', async () => {
    const s = services();
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    async function* body() {
      for (let i = 0; i < 25; i += 1) {
        if (i === 15) await held;
        yield valid(i);
      }
    }
    const submitting = submitBatch(s, { tenant: tenantA, requestId: 'r', items: body(), options: () => ({ batchId: 'overlap', invalidItems: 'record' }), optionsUpFront: true });
    while (s.orchestrator.started.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const key = s.orchestrator.started[0]!;
    const running = runBatch(s, key, { workerId: 'w', signal: new AbortController().signal });
    while ((await s.batches.get(key))!.counts.processed === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await s.batches.get(key)).toMatchObject({ status: 'processing', upload: { complete: false, received: 10 }, counts: { processed: 10 } });
    release();
    expect((await submitting).ok).toBe(true);
    await running;
    expect(await s.batches.get(key)).toMatchObject({ status: 'completed', upload: { complete: true, received: 25 }, counts: { total: 25, processed: 25, succeeded: 25 } });
  });

  it('cancels the batch when the body breaks off part-way, keeping the segments stored, and answers the error', async () => {
    const s = services();
    async function* body() {
      for (let i = 0; i < 23; i += 1) yield valid(i);
      throw new AppFailure(validation('the upload ended before the body was complete', []));
    }
    const submitted = await submitBatch(s, { tenant: tenantA, requestId: 'r', items: body(), options: () => ({ batchId: 'cut', invalidItems: 'record' }), optionsUpFront: true });
    expect(submitted).toMatchObject({ ok: false, error: { kind: 'validation' } });
    const key = s.orchestrator.started[0]!;
    expect(s.orchestrator.cancelled).toEqual([key]);
    const batch = await s.batches.get(key);
    expect(batch).toMatchObject({ status: 'cancelling', upload: { complete: false, received: 20 }, counts: { total: 20 }, payload: { segments: 2 } });
    // Said once (the reader's reason is the same words, not repeated after a colon).
    expect(batch?.error).toBe('the upload ended before the body was complete');
    expect(s.payloads.objects.size).toBe(2);
    await runBatch(s, key, { workerId: 'w', signal: new AbortController().signal });
    expect((await s.batches.get(key))?.status).toBe('cancelled');
  });

  it('keeps the default (reject): the first invalid item refuses the batch and nothing is stored', async () => {
    const s = services();
    async function* body() {
      for (let i = 0; i < 30; i += 1) yield i === 17 ? { content: '' } : valid(i);
    }
    const submitted = await submitBatch(s, { tenant: tenantA, requestId: 'r', items: body(), options: () => ({}), optionsUpFront: true });
    expect(submitted).toMatchObject({ ok: false, error: { kind: 'validation', errors: [{ path: 'memories.17.content' }] } });
    expect(s.payloads.objects.size).toBe(0);
    expect(s.orchestrator.started).toEqual([]);
  });

  it('abandons an upload that stored nothing for longer than the stall limit: the batch ends cancelled', async () => {
    const now = Date.now();
    const s = services({ now: () => new Date(now) });
    const stalled = newBatch({ invalidItems: 'record', status: 'processing', upload: { complete: false, received: 100, storedAt: new Date(now - uploadStallMs - 1000).toISOString() } });
    const live = newBatch({ invalidItems: 'record', status: 'processing', upload: { complete: false, received: 100, storedAt: new Date(now - 1000).toISOString() } });
    await s.batches.create(stalled);
    await s.batches.create(live);
    expect(await awaitSegments(s, live.key, 4, { maxWaitMs: 60 })).toEqual({ segments: 4, uploadOpen: true, schedules: true });
    expect(await awaitSegments(s, stalled.key, 4, { maxWaitMs: 60_000 })).toEqual({ segments: 4, uploadOpen: true, schedules: false });
    const after = await s.batches.get(stalled.key);
    expect(after).toMatchObject({ status: 'cancelling', counts: { total: 100 } });
    expect(after?.error).toMatch(/no part of the body was stored for 5 minutes/);
  });
});
