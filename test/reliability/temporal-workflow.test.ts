// processBatch on a real Temporal dev server with in-process workers: constant-size input, continue-as-new,
// the progress query, corrupt segments, injected faults, cancellation, webhook retries, and replay of recorded
// histories (fresh ones and the committed fixtures) with the current workflow code.
//
// Histories are kept as binary protobuf (`.binpb`, as the server stores them), not JSON: in this install the SDK's
// JSON helpers (historyToJSON/historyFromJSON) load a second protobufjs copy and fail with "type must be a Type".
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import protos from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultySink } from '../support/faults/memory-sink.ts';
import type { ProcessBatchResult } from '../../src/app/temporal/workflows.ts';
import { cancelBatch } from '../../src/app/requests/cancel-batch.ts';
import { segmentKey } from '../../src/domain/codec.ts';
import { workflowIdFor } from '../../src/domain/batch.ts';
import { tenantA } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import {
  inputBytes, runHistories, type RunHistory, settle, submitDirect, temporalFixture, type TemporalFixture,
  withoutStarting, workflowBundle,
} from '../support/temporal.ts';
import { storedCount } from '../support/stored.ts';

const proto = protos.temporal; // a CommonJS module: named imports do not work under plain Node
const root = join(import.meta.dirname, '..', '..');
const fixturesDir = join(root, 'test/fixtures/temporal');
const artifactsDir = join(root, 'test/artifacts/temporal');
/** BATCHMEM_RECORD_HISTORIES=1 refreshes the committed fixtures from this run's histories. */
const recordFixtures = process.env.BATCHMEM_RECORD_HISTORIES === '1';

let temporal: TemporalBackend;
const recorded: Array<{ name: string; workflowId: string; run: RunHistory }> = [];

beforeAll(async () => {
  temporal = await startTemporal();
});
afterAll(stopAllBackends);
printLogsOnFailure(() => [temporal]);

const webhookSecret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');

describe('processBatch on Temporal', () => {
  let fixture: TemporalFixture;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    receiver = await webhookReceiver(webhookSecret);
    fixture = await temporalFixture(temporal, {
      settings: {
        segmentMaxItems: 10,
        segmentConcurrency: 2,
        allowPrivateWebhooks: true,
        webhookMaxAttempts: 4,
        webhookBaseDelayMs: 100,
        webhookMaxDelayMs: 400,
      },
      segmentsPerRun: 4,
    });
  });
  afterAll(async () => {
    await fixture?.close();
    await receiver?.close();
  });

  it('carries only the batch key, continues as new every few segments, and completes with exact counts', async () => {
    const batch = await submitDirect(fixture.services, 95);
    const done = await settle(fixture.services, batch.key);
    expect(done.status).toBe('completed');
    expect(done.counts).toEqual({ total: 95, processed: 95, succeeded: 95, failed: 0 });
    expect(await storedCount(fixture.services.sink, batch.key)).toBe(95);

    const runs = await runHistories(fixture.client, workflowIdFor(batch.key));
    // 10 segments, 4 per run.
    expect(runs).toHaveLength(3);
    for (const run of runs) expect(inputBytes(run).data).toBeLessThanOrEqual(128);
    console.log(`[temporal] 95 memories, 10 segments, 4 per run: inputs ${runs.map((r) => inputBytes(r).data).join('/')} bytes, ` +
      `histories ${runs.map((r) => r.events).join('/')} events`);
    runs.forEach((run, i) => recorded.push({ name: `completed-run-${i + 1}`, workflowId: workflowIdFor(batch.key), run }));

    const segments = await fixture.services.batches.listSegments(batch.key);
    expect(segments.map((s) => s.segment).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new Set(segments.map((s) => s.workerId))).toEqual(new Set(['test-worker-1']));
  });

  it('maps a repeated start of a finished batch to its workflow, without a new run', async () => {
    const batch = await submitDirect(fixture.services, 12);
    await settle(fixture.services, batch.key);
    const workflowId = workflowIdFor(batch.key);
    await fixture.client.workflow.getHandle(workflowId).result();
    const before = await runHistories(fixture.client, workflowId);
    expect(await fixture.orchestrator.start(batch.key)).toEqual({ workflowId });
    expect(await fixture.describe(batch.key)).toEqual({ workflowId, running: false });
    const after = await runHistories(fixture.client, workflowId);
    expect(after.map((r) => r.runId)).toEqual(before.map((r) => r.runId));
  });

  it('answers the progress query from workflow state while segments run', async () => {
    const batch = await submitDirect(fixture.services, 400);
    let seen: Awaited<ReturnType<typeof fixture.progress>>;
    const deadline = Date.now() + 60_000;
    do {
      seen = await fixture.progress(batch.key).catch(() => undefined);
      if (seen?.phase === 'processing' && (seen.counts?.processed ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    } while (Date.now() < deadline);
    expect(seen?.phase).toBe('processing');
    expect(seen?.counts?.total).toBe(400);
    expect(seen?.counts?.processed).toBeGreaterThan(0);
    expect(seen?.runningSegments).toBeLessThanOrEqual(2);
    const done = await settle(fixture.services, batch.key);
    expect(done.counts.processed).toBe(400);
    // Once the workflow has finished, the last run answers from its final state.
    await fixture.client.workflow.getHandle(workflowIdFor(batch.key)).result();
    expect((await fixture.progress(batch.key))?.phase).toBe('done');
  });

  it('fails a batch whose segment is corrupt, without retrying that segment', async () => {
    const batch = await submitDirect(withoutStarting(fixture.services), 30);
    const name = segmentKey(batch.payload.prefix, 1, batch.payload.codec);
    const path = join(fixture.dataDir, 'payloads', name);
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(path, bytes);

    await fixture.orchestrator.start(batch.key);
    const done = await settle(fixture.services, batch.key);
    expect(done.status).toBe('failed');
    expect(done.error).toContain(name);
    const [run] = await runHistories(fixture.client, workflowIdFor(batch.key));
    const events = run!.history.events ?? [];
    const failed = events.filter((e) => e.activityTaskFailedEventAttributes);
    expect(failed).toHaveLength(1);
    const startedId = failed[0]!.activityTaskFailedEventAttributes!.startedEventId;
    const started = events.find((e) => Number(e.eventId) === Number(startedId));
    expect(started?.activityTaskStartedEventAttributes?.attempt).toBe(1);
    recorded.push({ name: 'corrupt-segment', workflowId: workflowIdFor(batch.key), run: run! });
  });

  it('retries the webhook through Temporal until the receiver accepts it', async () => {
    receiver.setMode('fail');
    const batch = await submitDirect(fixture.services, 20, { webhookUrl: receiver.url, webhookSecret });
    const deadline = Date.now() + 30_000;
    while (receiver.deliveries.filter((d) => d.payload.data.id === batch.id).length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    receiver.setMode('ok');
    const delivery = await receiver.waitFor(batch.id);
    expect(delivery.verified).toBe(true);
    expect(delivery.payload.type).toBe('batch.completed');
    const result = await fixture.client.workflow.getHandle(workflowIdFor(batch.key)).result() as ProcessBatchResult;
    expect(result.webhook).toBe('delivered');
    const stored = await fixture.services.batches.get(batch.key);
    expect(stored?.webhook.delivered).toBe(true);
    expect(stored?.webhook.attempts).toBeGreaterThanOrEqual(3);
    // Every attempt carried the same message id.
    expect(new Set(receiver.deliveries.filter((d) => d.payload.data.id === batch.id).map((d) => d.id)).size).toBe(1);
  });

  it('stops webhook attempts at the bound and still completes the batch when the receiver stays down', async () => {
    receiver.setMode('fail');
    const batch = await submitDirect(fixture.services, 20, { webhookUrl: receiver.url, webhookSecret });
    const result = await fixture.client.workflow.getHandle(workflowIdFor(batch.key)).result() as ProcessBatchResult;
    receiver.setMode('ok');
    expect(result).toMatchObject({ status: 'completed', webhook: 'not_delivered' });
    const stored = await fixture.services.batches.get(batch.key);
    expect(stored?.status).toBe('completed');
    expect(stored?.webhook).toMatchObject({ delivered: false, attempts: 4 });
    expect(stored?.webhook.lastError).toBeTruthy();
  });
});

describe('processBatch under faults and cancellation', () => {
  it('completes through retries when a third of segment attempts fail, with exact counts', async () => {
    let attempts = 0;
    let injected = 0;
    const random = () => {
      const draw = Math.random();
      attempts += 1;
      if (draw < 1 / 3) injected += 1;
      return draw;
    };
    const fixture = await temporalFixture(temporal, {
      settings: { segmentMaxItems: 500, segmentConcurrency: 4, segmentMaxAttempts: 12 },
      wrapSink: (sink) => new FaultySink(sink, { segmentFailureRate: 1 / 3, random }),
    });
    try {
      const total = 20_000;
      const startedAt = Date.now();
      const batch = await submitDirect(fixture.services, total);
      const done = await settle(fixture.services, batch.key);
      console.log(`[temporal] ${total} memories, 40 segments: ${injected} of ${attempts} segment attempts failed by injection; ` +
        `completed in ${Date.now() - startedAt} ms`);
      expect(injected).toBeGreaterThan(0);
      expect(done.status).toBe('completed');
      expect(done.counts).toEqual({ total, processed: total, succeeded: total, failed: 0 });
      expect(await storedCount(fixture.services.sink, batch.key)).toBe(total);
      expect((await fixture.services.batches.listSegments(batch.key)).length).toBe(40);
    } finally {
      await fixture.close();
    }
  });

  it('cancels a running batch: running segments finish, no new ones start, counts equal the memories stored', async () => {
    const fixture = await temporalFixture(temporal, { settings: { segmentMaxItems: 100, segmentConcurrency: 2 } });
    try {
      const total = 20_000;
      const batch = await submitDirect(fixture.services, total);
      const deadline = Date.now() + 60_000;
      while (((await fixture.services.batches.get(batch.key))?.counts.processed ?? 0) === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const cancelled = await cancelBatch(fixture.services, tenantA, batch.id);
      expect(cancelled.ok).toBe(true);
      const done = await settle(fixture.services, batch.key);
      expect(done.status).toBe('cancelled');
      expect(done.counts.processed).toBeGreaterThan(0);
      expect(done.counts.processed).toBeLessThan(total);
      expect(done.counts.processed % 100).toBe(0);
      expect(await storedCount(fixture.services.sink, batch.key)).toBe(done.counts.processed);
      const result = await fixture.client.workflow.getHandle(workflowIdFor(batch.key)).result() as ProcessBatchResult;
      expect(result.status).toBe('cancelled');
      expect(result.counts).toEqual(done.counts);
      console.log(`[temporal] cancelled ${total}-memory batch after ${done.counts.processed} memories`);
      const runs = await runHistories(fixture.client, workflowIdFor(batch.key));
      expect(runs.at(-1)!.history.events!.some((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'cancel')).toBe(true);
      recorded.push({ name: 'cancelled', workflowId: workflowIdFor(batch.key), run: runs.at(-1)! });
    } finally {
      await fixture.close();
    }
  });
});

describe('processBatch determinism', () => {
  it('replays the histories recorded by this run with the current workflow code', async () => {
    expect(recorded.map((r) => r.name)).toEqual(['completed-run-1', 'completed-run-2', 'completed-run-3', 'corrupt-segment', 'cancelled']);
    mkdirSync(artifactsDir, { recursive: true });
    if (recordFixtures) mkdirSync(fixturesDir, { recursive: true });
    for (const { name, workflowId, run } of recorded) {
      const bytes = proto.api.history.v1.History.encode(run.history).finish();
      writeFileSync(join(artifactsDir, `${name}.binpb`), bytes);
      if (recordFixtures) writeFileSync(join(fixturesDir, `process-batch-${name}.binpb`), bytes);
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, run.history, workflowId);
    }
  });

  it('replays the committed history fixtures with the current workflow code', async () => {
    const files = readdirSync(fixturesDir).filter((f) => f.startsWith('process-batch-') && f.endsWith('.binpb'));
    expect(files.length, `no committed histories in ${fixturesDir}; record them with BATCHMEM_RECORD_HISTORIES=1`).toBeGreaterThanOrEqual(5);
    for (const file of files) {
      const history = proto.api.history.v1.History.decode(readFileSync(join(fixturesDir, file)));
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, file);
    }
  });
});
