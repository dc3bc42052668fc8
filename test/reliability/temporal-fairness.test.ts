// Fair share on Temporal is task-queue fairness keys: the Temporal dev server the tests run (CLI 1.5.1, server
// 1.29.1) supports them once `matching.enableFairness` is on, and the TypeScript SDK (1.24) sets them per workflow
// start and per activity. Each batch's workflow is started with its organization as the key, and its segment
// activities carry the same key, so the server dispatches the workflow and activity tasks of one organization's
// backlog and another's small batch in turn. Checked here on the recorded histories and by order of completion, and
// for the starts the API makes when it comes up (the composition root's check that unfinished batches have a workflow).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeBatch } from '../../src/app/change-batch.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import type { OrchestratedServices } from '../../src/app/services.ts';
import { buildRuntime } from '../../src/app/wire.ts';
import { type Batch, type Tenant, workflowIdFor } from '../../src/domain/batch.ts';
import { tenantA, tenantB, uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { runHistories, settle, temporalFixture, type TemporalFixture, withoutStarting } from '../support/temporal.ts';

let temporal: TemporalBackend;
let fixture: TemporalFixture;

beforeAll(async () => {
  temporal = await startTemporal({ extraArgs: ['--dynamic-config-value', 'matching.enableFairness=true'] });
  fixture = await temporalFixture(temporal, { settings: { segmentMaxItems: 20 } });
});
afterAll(async () => {
  await fixture?.close();
  await stopAllBackends();
});
printLogsOnFailure(() => [temporal]);

async function submitFor(tenant: Tenant, count: number, services: OrchestratedServices = fixture.services): Promise<Batch> {
  async function* items() {
    for (let i = 0; i < count; i += 1) yield { content: `${tenant.organization} memory ${i}` };
  }
  const batchId = uniqueId();
  const result = await submitBatch(services, { tenant, requestId: uniqueId('req'), items: items(), options: () => ({ batchId }) });
  if (!result.ok) throw new Error(result.error.detail);
  return result.value.batch;
}

/** The fairness key of every segment activity the workflow's runs scheduled. */
async function segmentFairnessKeys(batch: Batch): Promise<string[]> {
  const runs = await runHistories(fixture.client, workflowIdFor(batch.key));
  return runs.flatMap((run) =>
    (run.history.events ?? [])
      .map((event) => event.activityTaskScheduledEventAttributes)
      .filter((scheduled) => scheduled?.activityType?.name === 'processSegment')
      .map((scheduled) => scheduled?.priority?.fairnessKey ?? ''),
  );
}

/** The fairness key each run of the batch's workflow (or of its redrive) was started with, first run first ('' for none). */
async function startFairnessKeys(batch: Batch, redrive = 0): Promise<string[]> {
  const runs = await runHistories(fixture.client, workflowIdFor(batch.key, redrive));
  return runs.map((run) => run.history.events?.[0]?.workflowExecutionStartedEventAttributes?.priority?.fairnessKey ?? '');
}

describe('fair share on Temporal through task-queue fairness keys', () => {
  it("starts every batch's workflow and its segment activities with its organization's fairness key, and another organization's small batch completes while one organization's backlog runs", async () => {
    // Organization A: three batches of 60 segments each; then organization B: one batch of one segment.
    const backlog = [];
    for (let i = 0; i < 3; i += 1) backlog.push(await submitFor(tenantA, 1200));
    const small = await submitFor(tenantB, 10);

    const smallFinal = await settle(fixture.services, small.key, 120_000);
    expect(smallFinal.status).toBe('completed');
    const backlogWhenSmallDone = await Promise.all(backlog.map((b) => fixture.services.batches.get(b.key)));
    expect(backlogWhenSmallDone.filter((b) => b?.status !== 'completed').length).toBeGreaterThan(0);

    for (const batch of backlog) expect((await settle(fixture.services, batch.key, 240_000)).status).toBe('completed');
    expect(await startFairnessKeys(small)).toEqual([tenantB.organization]);
    expect(await segmentFairnessKeys(small)).toEqual([tenantB.organization]);
    for (const batch of backlog) {
      expect(await startFairnessKeys(batch)).toEqual([tenantA.organization]);
      const keys = await segmentFairnessKeys(batch);
      expect(keys).toHaveLength(60);
      expect(new Set(keys)).toEqual(new Set([tenantA.organization]));
    }
  });

  it("starts the batches the API finds without a workflow at its start with their organization's key, a reopened batch under its redrive's id", async () => {
    // One batch never started (Temporal unreachable at submit), one reopened whose redrive run was never started.
    const unstarted = await submitFor(tenantB, 10, withoutStarting(fixture.services));
    const reopened = await submitFor(tenantA, 10);
    expect((await settle(fixture.services, reopened.key, 60_000)).status).toBe('completed');
    await changeBatch(fixture.services.batches, reopened.key, () => ({ status: 'processing', redrives: 1, completedAt: null, error: null }));

    const runtime = await buildRuntime(
      loadConfig({
        BATCHMEM_ORCHESTRATOR: 'temporal',
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_NAMESPACE: temporal.namespace,
        TEMPORAL_TASK_QUEUE: fixture.taskQueue,
        BATCHMEM_DATA_DIR: fixture.dataDir,
      }),
      createLogger('silent'),
    );
    try {
      await runtime.startBackground();
    } finally {
      await runtime.close();
    }
    expect((await settle(fixture.services, unstarted.key, 60_000)).status).toBe('completed');
    expect(await startFairnessKeys(unstarted)).toEqual([tenantB.organization]);
    expect(await settle(fixture.services, reopened.key, 60_000)).toMatchObject({ status: 'completed', redrives: 1 });
    expect(await startFairnessKeys(reopened, 1)).toEqual([tenantA.organization]);
  });
});
