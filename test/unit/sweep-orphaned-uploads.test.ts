// The orphan sweep's rules on fakes: only folders no batch points at and untouched for the grace period go.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultSettings, type Services } from '../../src/app/services.ts';
import { orphanSweepIntervalMs, scheduleOrphanSweep, sweepOrphanedUploads } from '../../src/app/processing/sweep-orphaned-uploads.ts';
import type { PayloadStore } from '../../src/ports/payload-store.ts';
import { newBatch } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';

const minute = 60_000;
const graceMs = 10 * minute;
const now = new Date('2026-06-10T12:00:00.000Z');

function context(payloads: PayloadStore = new MemoryPayloadStore()) {
  const batches = new MemoryBatchRepository();
  const services: Services = {
    batches, payloads, sink: new MemorySinkFake(), webhooks: new ScriptedNotifier(), clock: { now: () => now }, settings: defaultSettings,
  };
  return { services, batches };
}

/** Writes `segments` objects under `prefix`, each written `ageMs` before `now`. */
async function upload(payloads: MemoryPayloadStore, prefix: string, segments: number, ageMs: number) {
  for (let segment = 1; segment <= segments; segment += 1) {
    const key = `${prefix}/segment-00000${segment}.zst`;
    const body = Buffer.from(key);
    await payloads.put(key, body, { sha256Hex: createHash('sha256').update(body).digest('hex'), contentType: 'application/x-ndjson', contentEncoding: 'zstd' });
    payloads.writtenAt.set(key, new Date(now.getTime() - ageMs));
  }
}

/** An upload folder as submit names it. */
const uploadPrefix = (organization = 'org-a') => `${organization}/b_${randomBytes(16).toString('hex')}`;

const folderCount = (payloads: MemoryPayloadStore, prefix: string) => [...payloads.objects.keys()].filter((key) => key.startsWith(`${prefix}/`)).length;

describe('sweepOrphanedUploads', () => {
  it('deletes an old folder no batch points at, and keeps recorded batches and young uploads', async () => {
    const payloads = new MemoryPayloadStore();
    const { services, batches } = context(payloads);
    const recorded = newBatch({ payload: { codec: 'zstd', prefix: uploadPrefix(), segments: 3, rawBytes: 30, storedBytes: 15 } });
    await batches.create(recorded);
    await upload(payloads, recorded.payload.prefix, 3, 60 * minute);
    const [dead, live, slow] = [uploadPrefix(), uploadPrefix(), uploadPrefix('org%2Fb')];
    await upload(payloads, dead, 4, graceMs + 1);
    await upload(payloads, live, 2, graceMs - 1_000);
    // A live upload whose first segment is old but whose latest is recent is still live.
    await upload(payloads, slow, 2, 60 * minute);
    payloads.writtenAt.set(`${slow}/segment-000002.zst`, new Date(now.getTime() - minute));

    const deleted: Array<[string, number]> = [];
    const sweep = await sweepOrphanedUploads(services, graceMs, { deleted: (prefix, objects) => deleted.push([prefix, objects]) });

    expect(sweep).toEqual({ folders: 4, deleted: 1, objects: 4, failures: 0 });
    expect(deleted).toEqual([[dead, 4]]);
    expect(folderCount(payloads, dead)).toBe(0);
    expect(folderCount(payloads, recorded.payload.prefix)).toBe(3);
    expect(folderCount(payloads, live)).toBe(2);
    expect(folderCount(payloads, slow)).toBe(2);
  });

  it('never touches a folder that is not an upload\'s, however old', async () => {
    const payloads = new MemoryPayloadStore();
    const { services } = context(payloads);
    const foreign = ['reports/2025', 'org-a/b_not-hex', `org-a/${'0'.repeat(32)}`, `org-a/b_${'a'.repeat(32)}/nested`];
    for (const prefix of foreign) await upload(payloads, prefix, 1, 24 * 60 * minute);
    const sweep = await sweepOrphanedUploads(services, graceMs);
    expect(sweep).toMatchObject({ folders: foreign.length, deleted: 0 });
    for (const prefix of foreign) expect(folderCount(payloads, prefix)).toBe(1);
  });

  it('looks folders up in groups, so any number of them is swept', async () => {
    const payloads = new MemoryPayloadStore();
    const { services, batches } = context(payloads);
    const kept = [];
    for (let i = 0; i < 250; i += 1) await upload(payloads, uploadPrefix(), 1, graceMs * 2);
    for (let i = 0; i < 3; i += 1) {
      const batch = newBatch({ payload: { codec: 'zstd', prefix: uploadPrefix(), segments: 1, rawBytes: 10, storedBytes: 5 } });
      await batches.create(batch);
      await upload(payloads, batch.payload.prefix, 1, graceMs * 2);
      kept.push(batch.payload.prefix);
    }
    const lookups: number[] = [];
    const referencedPrefixes = batches.referencedPrefixes.bind(batches);
    batches.referencedPrefixes = async (prefixes) => {
      lookups.push(prefixes.length);
      return referencedPrefixes(prefixes);
    };
    const sweep = await sweepOrphanedUploads(services, graceMs);
    expect(sweep).toMatchObject({ folders: 253, deleted: 250, objects: 250 });
    expect(Math.max(...lookups)).toBeLessThanOrEqual(100);
    expect([...payloads.objects.keys()].map((key) => key.slice(0, key.lastIndexOf('/'))).sort()).toEqual(kept.sort());
  });

  it('reports a folder it could not delete and goes on with the others', async () => {
    const payloads = new MemoryPayloadStore();
    const [stuck, dead] = [uploadPrefix(), uploadPrefix()];
    await upload(payloads, stuck, 1, graceMs * 2);
    await upload(payloads, dead, 1, graceMs * 2);
    const deletePrefix = payloads.deletePrefix.bind(payloads);
    payloads.deletePrefix = async (prefix) => {
      if (prefix === stuck) throw new Error('store refused the delete');
      return deletePrefix(prefix);
    };
    const { services } = context(payloads);
    const failed: string[] = [];
    const sweep = await sweepOrphanedUploads(services, graceMs, { failed: (prefix) => failed.push(prefix) });
    expect(sweep).toMatchObject({ deleted: 1, failures: 1 });
    expect(failed).toEqual([stuck]);
    expect(folderCount(payloads, dead)).toBe(0);
  });

  it('sweeps at once when scheduled, and stops', async () => {
    const payloads = new MemoryPayloadStore();
    const dead = uploadPrefix();
    await upload(payloads, dead, 2, graceMs * 2);
    const { services } = context(payloads);
    const swept: number[] = [];
    const schedule = scheduleOrphanSweep(services, { graceMs, intervalMs: 60 * minute, onSweep: (sweep) => swept.push(sweep.deleted) });
    await expect.poll(() => swept).toEqual([1]);
    await schedule.stop();
    expect(folderCount(payloads, dead)).toBe(0);
  });

  it('sweeps every grace period, within a second and an hour', () => {
    expect(orphanSweepIntervalMs(15 * minute)).toBe(15 * minute);
    expect(orphanSweepIntervalMs(100)).toBe(1_000);
    expect(orphanSweepIntervalMs(24 * 60 * minute)).toBe(60 * minute);
  });
});
