// Payload retention: segments of a finished batch go once the retention has passed; the record stays.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { defaultSettings, type Services } from '../../src/app/services.ts';
import { expirePayloads, expiryIntervalMs, scheduleExpiry } from '../../src/app/processing/expire-payloads.ts';
import type { Batch } from '../../src/domain/batch.ts';
import { newBatch } from '../support/batches.ts';
import { MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';
import { tempDir } from '../support/local-context.ts';

const hour = 3_600_000;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function context(now: Date) {
  const dir = tempDir();
  const batches = new SqliteBatchRepository(join(dir.path, 'batchmem.db'));
  const payloads = new MemoryPayloadStore();
  const clock = { now: () => now };
  const services: Services = {
    batches, payloads, sink: new MemorySinkFake(), webhooks: new ScriptedNotifier(), clock, settings: defaultSettings,
  };
  cleanups.push(async () => { await batches.close(); dir.remove(); });
  return { services, payloads, batches, clock };
}

async function stored(services: Services, payloads: MemoryPayloadStore, overrides: Partial<Batch>): Promise<Batch> {
  const batch = newBatch({ ...overrides, counts: { total: 100, processed: 100, succeeded: 99, failed: 1 } });
  await services.batches.create(batch);
  for (let segment = 1; segment <= batch.payload.segments; segment += 1) {
    const body = Buffer.from(`segment ${segment}`);
    await payloads.put(`${batch.payload.prefix}/segment-00000${segment}.zst`, body, {
      sha256Hex: createHash('sha256').update(body).digest('hex'),
      contentType: 'application/x-ndjson',
      contentEncoding: 'zstd',
    });
  }
  return batch;
}

const segmentsOf = (payloads: MemoryPayloadStore, batch: Batch) =>
  [...payloads.objects.keys()].filter((key) => key.startsWith(`${batch.payload.prefix}/`)).length;

describe('expirePayloads', () => {
  it('deletes the segments of final batches past their retention and keeps their records', async () => {
    const now = new Date('2026-06-10T12:00:00.000Z');
    const { services, payloads } = context(now);
    const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
    const completed = await stored(services, payloads, { status: 'completed', completedAt: ago(8 * 24 * hour) });
    const failed = await stored(services, payloads, { status: 'failed', completedAt: ago(7 * 24 * hour), error: 'segment 2 is corrupt' });
    const recent = await stored(services, payloads, { status: 'completed', completedAt: ago(6 * 24 * hour) });
    const running = await stored(services, payloads, { status: 'processing', startedAt: ago(30 * 24 * hour) });

    const sweep = await expirePayloads(services, 7 * 24 * hour);

    expect(sweep).toEqual({ batches: 2, objects: 8, failures: [] });
    expect(segmentsOf(payloads, completed)).toBe(0);
    expect(segmentsOf(payloads, failed)).toBe(0);
    expect(segmentsOf(payloads, recent)).toBe(4);
    expect(segmentsOf(payloads, running)).toBe(4);
    expect(await services.batches.get(completed.key)).toEqual(completed);
    expect(await services.batches.get(failed.key)).toEqual(failed);
    expect(await expirePayloads(services, 7 * 24 * hour)).toEqual({ batches: 0, objects: 0, failures: [] });
  });

  it('reports a batch whose deletion failed and deletes it on the next sweep', async () => {
    const now = new Date('2026-06-10T12:00:00.000Z');
    const { services, payloads } = context(now);
    const batch = await stored(services, payloads, { status: 'cancelled', completedAt: new Date(now.getTime() - 2 * hour).toISOString() });
    const deletePrefix = payloads.deletePrefix.bind(payloads);
    payloads.deletePrefix = async () => { throw new Error('store unavailable'); };

    const first = await expirePayloads(services, hour);
    expect(first.batches).toBe(0);
    expect(first.failures).toEqual([{ key: batch.key, error: new Error('store unavailable') }]);
    expect(segmentsOf(payloads, batch)).toBe(4);

    payloads.deletePrefix = deletePrefix;
    expect(await expirePayloads(services, hour)).toEqual({ batches: 1, objects: 4, failures: [] });
  });

  it('works through more due batches than one listing page', async () => {
    const now = new Date('2026-06-10T12:00:00.000Z');
    const { services, payloads } = context(now);
    for (let i = 0; i < 130; i += 1) {
      await stored(services, payloads, { status: 'completed', completedAt: new Date(now.getTime() - 2 * hour - i).toISOString(), payload: { ...newBatch().payload, segments: 1 } });
    }
    expect(await expirePayloads(services, hour)).toEqual({ batches: 130, objects: 130, failures: [] });
    expect(payloads.objects.size).toBe(0);
  });
});

describe('scheduleExpiry', () => {
  it('sweeps at once and again after each interval, and stops', async () => {
    const now = new Date('2026-06-10T12:00:00.000Z');
    const { services, payloads } = context(now);
    const sweeps: number[] = [];
    const schedule = scheduleExpiry(services, { retentionMs: hour, intervalMs: 20, onSweep: (s) => sweeps.push(s.batches) });
    await expect.poll(() => sweeps.length).toBeGreaterThanOrEqual(1);
    await stored(services, payloads, { status: 'completed', completedAt: new Date(now.getTime() - 2 * hour).toISOString() });
    await expect.poll(() => sweeps.includes(1)).toBe(true);
    await schedule.stop();
    const count = sweeps.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(sweeps.length).toBe(count);
  });

  it('sweeps every tenth of the retention, between one second and ten minutes', () => {
    expect(expiryIntervalMs(2_000)).toBe(1_000);
    expect(expiryIntervalMs(hour)).toBe(6 * 60_000);
    expect(expiryIntervalMs(7 * 24 * hour)).toBe(10 * 60_000);
  });
});
