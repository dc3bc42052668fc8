// The Orchestrator contract: batches run by reference to completion, start is idempotent, cancel keeps partial counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OrchestratedServices } from '../../src/app/services.ts';
import { cancelBatch } from '../../src/app/requests/cancel-batch.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import type { Batch } from '../../src/domain/batch.ts';
import { isFinal } from '../../src/domain/batch.ts';
import { tenantA, uniqueId } from '../support/batches.ts';
import { storedCount } from '../support/stored.ts';

export interface OrchestratorFixture {
  /** A context whose settings cut segments of 10 memories. */
  services: OrchestratedServices;
  /** How the orchestrator's backend records the batch's run (read directly, not through the port); undefined for a batch it never saw. */
  describe(batchKey: string): Promise<{ workflowId: string } | undefined>;
  close(): Promise<void>;
}

async function* items(count: number) {
  for (let i = 0; i < count; i += 1) yield { content: `memory ${i}`, external_id: `e${i}` };
}

async function submit(services: OrchestratedServices, count: number, batchId = uniqueId()): Promise<Batch> {
  const result = await submitBatch(services, { tenant: tenantA, requestId: uniqueId('req'), items: items(count), options: () => ({ batchId }) });
  if (!result.ok) throw new Error(result.error.detail);
  return result.value.batch;
}

async function settle(services: OrchestratedServices, key: string, timeoutMs = 120_000): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await services.batches.get(key);
    if (batch && isFinal(batch.status)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${key} is still ${batch?.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function orchestratorContract(adapter: string, open: () => Promise<OrchestratorFixture>): void {
  describe(`Orchestrator contract: ${adapter}`, () => {
    let fixture: OrchestratorFixture;
    let services: OrchestratedServices;
    beforeAll(async () => {
      fixture = await open();
      services = fixture.services;
    });
    afterAll(async () => fixture?.close());

    it('runs a submitted batch to completed with exact counts', async () => {
      const batch = await submit(services, 95);
      expect(batch.payload.segments).toBe(10);
      const done = await settle(services, batch.key);
      expect(done.status).toBe('completed');
      expect(done.counts).toEqual({ total: 95, processed: 95, succeeded: 95, failed: 0 });
      expect(await storedCount(services.sink, batch.key)).toBe(95);
    });

    it('treats a second start of the same batch as the same run', async () => {
      const batch = await submit(services, 40);
      const first = await services.orchestrator.start(batch.key);
      const second = await services.orchestrator.start(batch.key);
      expect(second.workflowId).toBe(first.workflowId);
      const done = await settle(services, batch.key);
      expect(done.counts.processed).toBe(40);
      expect(await storedCount(services.sink, batch.key)).toBe(40);
      expect((await fixture.describe(batch.key))?.workflowId).toBe(first.workflowId);
    });

    it('ends a cancelled batch as cancelled, with counts equal to the memories stored', async () => {
      const batch = await submit(services, 3000);
      const cancelled = await cancelBatch(services, tenantA, batch.id);
      expect(cancelled.ok).toBe(true);
      const done = await settle(services, batch.key);
      expect(done.status).toBe('cancelled');
      expect(done.counts.processed).toBeLessThan(3000);
      expect(done.counts.processed).toBe(await storedCount(services.sink, batch.key));
    });

    it('describes a batch it never saw as undefined', async () => {
      expect(await fixture.describe('f'.repeat(32))).toBeUndefined();
    });
  });
}
