// The embedded runner when its batch store fails for a while (what a locked SQLite file looks like to the use
// cases once busy_timeout runs out): writes throw, then work again. Every batch must still reach its final status
// in the same process, without waiting for a restart, with exact counts and one logical webhook event.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import type { OrchestratedServices } from '../../src/app/services.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import { type Batch, isFinal } from '../../src/domain/batch.ts';
import type { BatchPatch, BatchRepository } from '../../src/ports/batch-repository.ts';
import { tenantA, uniqueId } from '../support/batches.ts';
import { localContext } from '../support/local-context.ts';
import { expectWebhookExactlyOnce } from '../support/reliability.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { storedCount } from '../support/stored.ts';

/** Write calls the test decides to fail: the next `count` calls that match. */
interface WriteFault {
  matches(method: 'create' | 'update' | 'recordSegment', patch?: BatchPatch): boolean;
  count: number;
}

function unreliable(inner: BatchRepository, faults: WriteFault[], failed: string[]): BatchRepository {
  const maybeFail = (method: 'create' | 'update' | 'recordSegment', patch?: BatchPatch) => {
    const fault = faults.find((f) => f.count > 0 && f.matches(method, patch));
    if (!fault) return;
    fault.count -= 1;
    failed.push(method);
    throw new Error('database is locked');
  };
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (property === 'update') {
        return async (key: string, version: number, patch: BatchPatch) => {
          maybeFail('update', patch);
          return target.update(key, version, patch);
        };
      }
      if (property === 'recordSegment') {
        return async (...args: Parameters<BatchRepository['recordSegment']>) => {
          maybeFail('recordSegment');
          return target.recordSegment(...args);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

async function* items(count: number) {
  for (let i = 0; i < count; i += 1) yield { content: `memory ${i}`, external_id: `e${i}` };
}

async function settle(services: OrchestratedServices, key: string, until: (b: Batch) => boolean = (b) => isFinal(b.status), timeoutMs = 60_000): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await services.batches.get(key);
    if (batch && until(batch)) return batch;
    if (Date.now() > deadline) throw new Error(`batch is still ${batch?.status} (webhook ${JSON.stringify(batch?.webhook)}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('embedded runner: the batch store fails for a while', () => {
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  let cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of cleanup.reverse()) await close();
    cleanup = [];
  });

  async function setup(faults: WriteFault[]) {
    const local = localContext({ segmentMaxItems: 10, segmentConcurrency: 2, webhookBaseDelayMs: 50, webhookMaxDelayMs: 200, allowPrivateWebhooks: true });
    const receiver = await webhookReceiver(secret);
    const failed: string[] = [];
    const batches = unreliable(local.services.batches, faults, failed);
    const base = { ...local.services, batches };
    const orchestrator = new LocalOrchestrator(base, { workerId: 'outage-test', batchConcurrency: 2 });
    const services: OrchestratedServices = { ...base, orchestrator };
    cleanup.push(async () => {
      await orchestrator.close();
      await receiver.close();
      await local.close();
    });
    const submit = async (count: number) => {
      const batchId = uniqueId();
      const result = await submitBatch(services, {
        tenant: tenantA,
        requestId: uniqueId('req'),
        items: items(count),
        options: () => ({ batchId, webhookUrl: receiver.url, webhookSecret: secret }),
      });
      if (!result.ok) throw new Error(result.error.detail);
      return result.value.batch;
    };
    return { services, receiver, failed, submit };
  }

  async function expectDone(services: OrchestratedServices, receiver: WebhookReceiver, batch: Batch, total: number) {
    const done = await settle(services, batch.key, (b) => isFinal(b.status) && b.webhook.delivered);
    expect(done.status).toBe('completed');
    expect(done.counts).toEqual({ total, processed: total, succeeded: total, failed: 0 });
    expect(await storedCount(services.sink, batch.key)).toBe(total);
    return done;
  }

  it('starts a batch whose move to processing failed', async () => {
    const { services, receiver, failed, submit } = await setup([{ matches: (m, p) => m === 'update' && p?.status === 'processing', count: 3 }]);
    const batch = await submit(95);
    await expectDone(services, receiver, batch, 95);
    expect(failed).toEqual(['update', 'update', 'update']);
    expectWebhookExactlyOnce(receiver, batch.id);
  });

  it('finalizes a batch whose final status failed to record', async () => {
    const { services, receiver, failed, submit } = await setup([{ matches: (m, p) => m === 'update' && p?.status === 'completed', count: 3 }]);
    const batch = await submit(95);
    await expectDone(services, receiver, batch, 95);
    expect(failed).toHaveLength(3);
    expectWebhookExactlyOnce(receiver, batch.id);
  });

  it('finishes a batch whose segment records failed, within the segment retries', async () => {
    // Two segments at a time, each failing in turn: at most three failures for any one segment, of five attempts.
    const { services, receiver, failed, submit } = await setup([{ matches: (m) => m === 'recordSegment', count: 6 }]);
    const batch = await submit(95);
    await expectDone(services, receiver, batch, 95);
    expect(failed).toHaveLength(6);
    expectWebhookExactlyOnce(receiver, batch.id);
  });

  it('keeps delivering a webhook whose attempts failed to record, as one logical event', async () => {
    const { services, receiver, failed, submit } = await setup([{ matches: (m, p) => m === 'update' && p?.webhook !== undefined, count: 2 }]);
    const batch = await submit(30);
    const done = await expectDone(services, receiver, batch, 30);
    expect(failed).toEqual(['update', 'update']);
    // The receiver may have accepted before the record failed: a resend then carries the same webhook-id.
    const deliveries = receiver.deliveries.filter((d) => d.payload.data.id === batch.id);
    expect(new Set(deliveries.map((d) => d.id)).size).toBe(1);
    expect(deliveries.every((d) => d.verified && d.payload.type === 'batch.completed')).toBe(true);
    expect(done.webhook).toMatchObject({ delivered: true, lastError: null });
  });
});
