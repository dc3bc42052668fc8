// The batch workflow's logic, on a local Temporal dev server (the CLI binary the test images are built with) with
// mocked activities: continue-as-new windows, cancel, a corrupt segment, and the segment and webhook retry loops.
// The activities and storage behind them are covered elsewhere (contract and reliability suites).
import { createHash, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelSignal, processBatchWorkflowType, redeliveryWorkflowId } from '../../src/ports/batch-workflow.ts';
import { workflowIdFor } from '../../src/domain/batch.ts';
import { TemporalOrchestrator } from '../../src/adapters/temporal/orchestrator.ts';
import type { BatchActivities, FinalState, RunPlan, SegmentStep, Tuning } from '../../src/app/temporal/activities.ts';
import { workflowsPath } from '../../src/app/temporal/worker.ts';
import type { ProcessBatchResult } from '../../src/app/temporal/workflows.ts';
import * as workflows from '../../src/app/temporal/workflows.ts';
import type { Counts } from '../../src/domain/progress.ts';
import { temporalCliPath } from '../support/temporal-cli.ts';

const tuning: Tuning = {
  parallelism: 2,
  segmentsPerRun: 4,
  segmentMaxAttempts: 3,
  segmentStartToCloseMs: 30_000,
  segmentHeartbeatTimeoutMs: 30_000,
  segmentRetryInitialMs: 10,
  segmentRetryMaxMs: 40,
  webhookMaxAttempts: 4,
  webhookBaseDelayMs: 10,
  webhookMaxDelayMs: 40,
  webhookStartToCloseMs: 30_000,
};

/** A batch as the mocked activities keep it, and what the workflow asked of them. */
class FakeBatch {
  readonly recorded = new Set<number>();
  readonly attempts = new Map<number, number>();
  readonly begun: number[] = [];
  finalized: { failure?: string | undefined } | undefined;
  webhookCalls = 0;
  /** When each webhook attempt ran (ms since the epoch). */
  readonly webhookCallTimes: number[] = [];
  cancelled = false;
  readonly segments: number;
  readonly itemsPerSegment = 10;
  constructor(segments: number) {
    this.segments = segments;
  }
  counts(): Counts {
    const processed = this.recorded.size * this.itemsPerSegment;
    return { total: this.segments * this.itemsPerSegment, processed, succeeded: processed, failed: 0 };
  }
}

type Script = {
  /** Thrown by the given attempt (1-based) of a segment; nothing means it succeeds. */
  segmentFailure?: (segment: number, attempt: number) => Error | undefined;
  /** Holds a segment until released (to cancel while segments run). */
  holdSegment?: (segment: number) => Promise<void> | undefined;
  webhook?: (call: number) => 'delivered' | 'nothing_to_send' | Error;
  /** The batch's tuning, when a case needs other retry settings. */
  tuning?: Tuning;
};

const batches = new Map<string, { batch: FakeBatch; script: Script }>();

function entry(batchKey: string) {
  const found = batches.get(batchKey);
  if (!found) throw new Error(`no fake batch ${batchKey}`);
  return found;
}

const activities = {
  async beginBatch(input: { batchKey: string; fromSegment: number }): Promise<RunPlan> {
    const { batch, script } = entry(input.batchKey);
    batch.begun.push(input.fromSegment);
    const end = input.fromSegment + tuning.segmentsPerRun;
    const doneSegments = [...batch.recorded].filter((s) => s >= input.fromSegment && s < end);
    return { status: batch.cancelled ? 'cancelling' : 'processing', segments: batch.segments, counts: batch.counts(), doneSegments, tuning: script.tuning ?? tuning, expiresAt: null };
  },
  async processSegment(input: { batchKey: string; segment: number }): Promise<SegmentStep> {
    const { batch, script } = entry(input.batchKey);
    const attempt = (batch.attempts.get(input.segment) ?? 0) + 1;
    batch.attempts.set(input.segment, attempt);
    await script.holdSegment?.(input.segment);
    const failure = script.segmentFailure?.(input.segment, attempt);
    if (failure) throw failure;
    batch.recorded.add(input.segment);
    return { status: 'recorded', counts: batch.counts() };
  },
  async finalizeBatch(input: { batchKey: string; failure?: string | undefined }): Promise<FinalState> {
    const { batch } = entry(input.batchKey);
    batch.finalized = { failure: input.failure };
    const status = batch.cancelled ? 'cancelled' : input.failure ? 'failed' : 'completed';
    return { status, counts: batch.counts() };
  },
  async expireBatch(input: { batchKey: string }): Promise<FinalState> {
    return { status: 'failed', counts: entry(input.batchKey).batch.counts() };
  },
  async deliverWebhook(input: { batchKey: string }): Promise<'delivered' | 'nothing_to_send'> {
    const { batch, script } = entry(input.batchKey);
    batch.webhookCalls += 1;
    batch.webhookCallTimes.push(Date.now());
    const answer = script.webhook?.(batch.webhookCalls) ?? 'nothing_to_send';
    if (answer instanceof Error) throw answer;
    return answer;
  },
} satisfies Partial<Record<keyof BatchActivities, unknown>>;

// The cases use separate batches and workflow ids, so they run side by side on the one worker.
describe.concurrent('processBatch on a local dev server, activities mocked', { timeout: 30_000 }, () => {
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `unit-${randomUUID()}`;

  beforeAll(async () => {
    try {
      Runtime.install({ logger: new DefaultLogger('WARN') });
    } catch {
      // Installed already in this process.
    }
    const [started, workflowBundle] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCliPath() } } }),
      bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') }) as Promise<WorkflowBundle>,
    ]);
    env = started;
    worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle, activities });
    running = worker.run();
  }, 60_000);

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await env?.teardown();
  });

  const start = (batch: FakeBatch, script: Script = {}) => {
    const batchKey = randomUUID().replaceAll('-', '');
    batches.set(batchKey, { batch, script });
    return env.client.workflow.start(processBatchWorkflowType, { taskQueue, workflowId: `batch-${batchKey}`, args: [{ batchKey }] });
  };

  it('registers the workflow under the type name the orchestrator starts', () => {
    expect(workflows.processBatch.name).toBe(processBatchWorkflowType);
  });

  it('processes every segment once, continuing as new after each window of segmentsPerRun', async () => {
    const batch = new FakeBatch(10);
    const handle = await start(batch);
    const result = (await handle.result()) as ProcessBatchResult;
    expect(result).toEqual({ status: 'completed', counts: { total: 100, processed: 100, succeeded: 100, failed: 0 }, webhook: 'nothing_to_send' });
    expect(batch.begun).toEqual([0, 4, 8]);
    expect([...batch.attempts.values()].every((n) => n === 1)).toBe(true);
    expect(batch.finalized).toEqual({ failure: undefined });
  });

  it('retries a failing segment with backoff and goes on when it succeeds', async () => {
    const batch = new FakeBatch(3);
    const handle = await start(batch, { segmentFailure: (segment, attempt) => (segment === 1 && attempt < 3 ? new Error('sink down') : undefined) });
    const result = (await handle.result()) as ProcessBatchResult;
    expect(result.status).toBe('completed');
    expect(batch.attempts.get(1)).toBe(3);
    expect(batch.finalized).toEqual({ failure: undefined });
  });

  it('fails the batch after the last attempt of a segment, with the policy’s message, and runs no further window', async () => {
    const batch = new FakeBatch(6);
    const handle = await start(batch, { segmentFailure: (segment) => (segment === 0 ? new Error('sink down') : undefined) });
    const result = (await handle.result()) as ProcessBatchResult;
    expect(result.status).toBe('failed');
    expect(batch.attempts.get(0)).toBe(tuning.segmentMaxAttempts);
    expect(batch.finalized?.failure).toMatch(/^segment 1 failed 3 times: .*sink down/);
    // The first window (segments 0-3) drains; no continue-as-new starts the next one.
    expect(batch.begun).toEqual([0]);
    expect(batch.attempts.has(4)).toBe(false);
  });

  it('does not retry a corrupt segment: the batch fails with its reason', async () => {
    const batch = new FakeBatch(2);
    const corrupt = ApplicationFailure.nonRetryable('segment-000001.zst: checksum mismatch', 'SegmentCorrupt');
    const handle = await start(batch, { segmentFailure: (segment) => (segment === 1 ? corrupt : undefined) });
    const result = (await handle.result()) as ProcessBatchResult;
    expect(result.status).toBe('failed');
    expect(batch.attempts.get(1)).toBe(1);
    expect(batch.finalized?.failure).toBe('segment-000001.zst: checksum mismatch');
  });

  it('stops scheduling segments on cancel, lets running ones finish, and finalizes', async () => {
    const batch = new FakeBatch(8);
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    const handle = await start(batch, { holdSegment: (segment) => (segment < 2 ? released : undefined) });
    await expect.poll(() => batch.attempts.size, { timeout: 10_000 }).toBe(2);
    batch.cancelled = true;
    await handle.signal(cancelSignal);
    release();
    const result = (await handle.result()) as ProcessBatchResult;
    expect(result.status).toBe('cancelled');
    expect([...batch.recorded].sort()).toEqual([0, 1]);
    expect(batch.attempts.size).toBe(2);
    expect(batch.begun).toEqual([0]);
  });

  it('retries an undelivered webhook from the attempts on record, and stops on a refusal or when they run out', async () => {
    const notDelivered = (attempts: number) =>
      ApplicationFailure.create({ message: '503 from receiver', type: 'WebhookNotDelivered', details: [attempts] });
    const delivered = new FakeBatch(1);
    const first = await start(delivered, { webhook: (call) => (call < 3 ? notDelivered(call) : 'delivered') });
    expect(((await first.result()) as ProcessBatchResult).webhook).toBe('delivered');
    expect(delivered.webhookCalls).toBe(3);

    const refused = new FakeBatch(1);
    const rejection = ApplicationFailure.create({ message: 'address refused', type: 'WebhookRejected', nonRetryable: true, details: [1] });
    const second = await start(refused, { webhook: () => rejection });
    expect(((await second.result()) as ProcessBatchResult).webhook).toBe('not_delivered');
    expect(refused.webhookCalls).toBe(1);

    // Resumed with 3 attempts already on the batch: one more, then the policy's 4 are used up.
    const resumed = new FakeBatch(1);
    const third = await start(resumed, { webhook: (call) => notDelivered(call + 2) });
    expect(((await third.result()) as ProcessBatchResult).webhook).toBe('not_delivered');
    expect(resumed.webhookCalls).toBe(2);
  });

  it("waits as long as the receiver's Retry-After asks (carried in the failure's details), up to the backoff cap", async () => {
    const busy = (attempts: number, retryAfterMs: number) =>
      ApplicationFailure.create({ message: 'receiver answered 429', type: 'WebhookNotDelivered', details: [attempts, retryAfterMs] });
    const batch = new FakeBatch(1);
    const handle = await start(batch, {
      tuning: { ...tuning, webhookMaxDelayMs: 1_200 },
      webhook: (call) => (call === 1 ? busy(1, 800) : call === 2 ? busy(2, 3_600_000) : 'delivered'),
    });
    expect(((await handle.result()) as ProcessBatchResult).webhook).toBe('delivered');
    const [first, second, third] = batch.webhookCallTimes as [number, number, number];
    // Without the hint the waits would be 5 to 10 ms and 10 to 20 ms.
    expect(second - first).toBeGreaterThanOrEqual(800);
    expect(third - second).toBeGreaterThanOrEqual(1_200);
    expect(third - second).toBeLessThan(10_000);
  });

  it("redelivers a final batch's webhook through the orchestrator: the same loop, and again after the last redelivery ended", async () => {
    const batch = new FakeBatch(1);
    const batchKey = randomUUID().replaceAll('-', '');
    const busy = (attempts: number) => ApplicationFailure.create({ message: 'receiver answered 503', type: 'WebhookNotDelivered', details: [attempts] });
    batches.set(batchKey, { batch, script: { webhook: (call) => (call === 1 ? busy(1) : 'delivered') } });
    const orchestrator = new TemporalOrchestrator(env.client, { taskQueue });
    await orchestrator.redeliver(batchKey);
    const handle = env.client.workflow.getHandle(redeliveryWorkflowId(`batch-${batchKey}`));
    expect(await handle.result()).toBe('delivered');
    expect(batch.webhookCalls).toBe(2);
    await orchestrator.redeliver(batchKey);
    // The first redelivery has ended, so this one is a new run under the same id.
    expect(await env.client.workflow.getHandle(redeliveryWorkflowId(`batch-${batchKey}`)).result()).toBe('delivered');
    expect(batch.webhookCalls).toBe(3);
  });

  /** The fairness key each run of a workflow id was started with, first run first ('' for none), read from history. */
  async function startedFairnessKeys(workflowId: string): Promise<string[]> {
    const keys: string[] = [];
    let runId: string | undefined = (await env.client.workflow.getHandle(workflowId).describe()).runId;
    while (runId) {
      const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
      const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
      keys.unshift(started?.priority?.fairnessKey ?? '');
      runId = started?.continuedExecutionRunId || undefined;
    }
    return keys;
  }

  it("starts every run of a batch with its organization's fairness key: the runs continued as new, a redrive and a redelivery; a long organization by its SHA-256", async () => {
    const orchestrator = new TemporalOrchestrator(env.client, { taskQueue });
    const organization = `org-${randomUUID()}`;
    const batchKey = randomUUID().replaceAll('-', '');
    const batch = new FakeBatch(10);
    batches.set(batchKey, { batch, script: { webhook: () => 'delivered' } });

    const { workflowId } = await orchestrator.start(batchKey, { organization });
    expect(((await env.client.workflow.getHandle(workflowId).result()) as ProcessBatchResult).status).toBe('completed');
    // Three windows of segmentsPerRun (4): the first run and two continued as new.
    expect(batch.begun).toEqual([0, 4, 8]);
    expect(await startedFairnessKeys(workflowId)).toEqual([organization, organization, organization]);

    const redrive = await orchestrator.start(batchKey, { organization, redrive: 1 });
    expect(redrive.workflowId).toBe(workflowIdFor(batchKey, 1));
    await env.client.workflow.getHandle(redrive.workflowId).result();
    expect(new Set(await startedFairnessKeys(redrive.workflowId))).toEqual(new Set([organization]));

    await orchestrator.redeliver(batchKey, { organization });
    const redelivery = redeliveryWorkflowId(workflowId);
    expect(await env.client.workflow.getHandle(redelivery).result()).toBe('delivered');
    expect(await startedFairnessKeys(redelivery)).toEqual([organization]);

    // Temporal takes keys of at most 64 bytes: a longer organization (here 65 bytes) is keyed by its SHA-256.
    const longOrganization = 'o'.repeat(65);
    const longKey = randomUUID().replaceAll('-', '');
    batches.set(longKey, { batch: new FakeBatch(1), script: {} });
    const long = await orchestrator.start(longKey, { organization: longOrganization });
    await env.client.workflow.getHandle(long.workflowId).result();
    expect(await startedFairnessKeys(long.workflowId)).toEqual([createHash('sha256').update(longOrganization).digest('hex')]);
  });
});
