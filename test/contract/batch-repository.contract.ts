// The BatchRepository contract: the executable form of the guarantees in src/ports/batch-repository.ts.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeBatch } from '../../src/app/change-batch.ts';
import { begin, endUpload, finish, isFinal, requestCancel, uploadProgress } from '../../src/domain/lifecycle.ts';
import { countsOf, emptyLedger, recordOutcome, type SegmentOutcome, type WriteCounts, writtenOf } from '../../src/domain/progress.ts';
import { type Batch, webhookDeliveryInProgress } from '../../src/domain/batch.ts';
import { InvalidCursorError, type BatchRepository } from '../../src/ports/batch-repository.ts';
import { newBatch, tenantA, tenantB, uniqueId } from '../support/batches.ts';

/** Write outcomes: `created` created, and so on. */
const written = (created: number, updated = 0, unchanged = 0): WriteCounts => ({ created, updated, unchanged });
/** A segment outcome whose succeeded items were all new memories. */
const allCreated = (segment: number, succeeded: number, failed: number): SegmentOutcome => ({ segment, succeeded, failed, written: written(succeeded) });

export interface RepositoryFixture {
  repository: BatchRepository;
  close(): Promise<void>;
}

export function batchRepositoryContract(adapter: string, open: () => Promise<RepositoryFixture>): void {
  describe(`BatchRepository contract: ${adapter}`, () => {
    let fixture: RepositoryFixture;
    let repo: BatchRepository;
    beforeAll(async () => {
      fixture = await open();
      repo = fixture.repository;
    });
    afterAll(async () => fixture?.close());

    it('creates a batch and reads it back unchanged', async () => {
      const batch = newBatch({ webhook: { url: 'https://example.com/h', secret: 'whsec_x', delivered: false, attempts: 0, lastError: null } });
      const { created, batch: stored } = await repo.create(batch);
      expect(created).toBe(true);
      expect(stored).toEqual(batch);
      expect(await repo.get(batch.key)).toEqual(batch);
    });

    it('returns the existing batch when the same key is created again', async () => {
      const batch = newBatch();
      await repo.create(batch);
      const again = await repo.create({ ...batch, requestId: 'another-request' });
      expect(again.created).toBe(false);
      expect(again.batch.requestId).toBe(batch.requestId);
    });

    it('answers undefined for an unknown key', async () => {
      expect(await repo.get('0'.repeat(32))).toBeUndefined();
    });

    it('updates with compare-and-set on the version', async () => {
      const batch = newBatch();
      await repo.create(batch);
      const updated = await repo.update(batch.key, 1, { status: 'processing', startedAt: '2026-01-01T00:00:00.000Z' });
      expect(updated).not.toBe('conflict');
      expect(updated).toMatchObject({ status: 'processing', version: 2, startedAt: '2026-01-01T00:00:00.000Z' });
      expect(await repo.update(batch.key, 1, { status: 'failed' })).toBe('conflict');
      expect((await repo.get(batch.key))?.status).toBe('processing');
    });

    it('lets exactly one of many concurrent updates of the same version win', async () => {
      const batch = newBatch();
      await repo.create(batch);
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => repo.update(batch.key, 1, { error: `writer ${i}` })),
      );
      const winners = results.filter((r) => r !== 'conflict');
      expect(winners).toHaveLength(1);
      expect((await repo.get(batch.key))?.version).toBe(2);
    });

    it('refuses a status change the lifecycle forbids, and changes nothing', async () => {
      const batch = newBatch({ status: 'completed', completedAt: '2026-01-01T00:00:00.000Z' });
      await repo.create(batch);
      expect(await repo.update(batch.key, 1, { status: 'processing' })).toEqual({
        kind: 'illegal_transition',
        from: 'completed',
        to: 'processing',
      });
      expect(await repo.update(batch.key, 1, { status: 'cancelling' })).toMatchObject({ kind: 'illegal_transition' });
      expect(await repo.get(batch.key)).toMatchObject({ status: 'completed', version: 1, completedAt: batch.completedAt });
      // Fields other than the status may still change on a final batch (the webhook's attempts, say).
      expect(await repo.update(batch.key, 1, { error: 'noted' })).toMatchObject({ status: 'completed', version: 2, error: 'noted' });
    });

    it("keeps the webhook loop's gave-up flag, and lets one of two concurrent redeliveries reset it", async () => {
      const webhook = { url: 'https://example.com/h', secret: 'whsec_x', delivered: false, attempts: 3, lastError: 'answered 500' };
      const batch = newBatch({ status: 'completed', completedAt: '2026-01-01T00:00:00.000Z', webhook });
      await repo.create(batch);
      const failed = await changeBatch(repo, batch.key, (current) => ({ webhook: { ...current.webhook, attempts: 4, gaveUp: true } }));
      expect((await repo.get(batch.key))!.webhook).toEqual({ ...webhook, attempts: 4, gaveUp: true });
      expect(webhookDeliveryInProgress(failed!.webhook, 8)).toBe(false);
      // Two redeliveries decide from the same record: the store lets one reset through, the other sees it in progress.
      const redeliver = () => changeBatch(repo, batch.key, (current) =>
        webhookDeliveryInProgress(current.webhook, 8) ? undefined : { webhook: { ...current.webhook, attempts: 0, lastError: null, gaveUp: false } });
      const [a, b] = await Promise.all([redeliver(), redeliver()]);
      expect([a!.version, b!.version]).toEqual([failed!.version + 1, failed!.version + 1]);
      expect((await repo.get(batch.key))!.webhook).toEqual({ ...webhook, attempts: 0, lastError: null, gaveUp: false });
    });

    it('leaves exactly one legal final state when finalize and cancel race', async () => {
      const now = '2026-01-01T00:00:00.000Z';
      // A runner's decision: the lifecycle step's patch when it is legal from what was read, else nothing to write.
      const decide = (lifecycleStep: (batch: Batch) => ReturnType<typeof finish>) => (batch: Batch) => {
        const result = lifecycleStep(batch);
        return result.ok ? result.value : undefined;
      };
      const finalize = decide((batch) => finish(batch, now));
      const cancel = decide(requestCancel);
      for (let round = 0; round < 6; round += 1) {
        const batch = newBatch({ status: 'processing', counts: { total: 10, processed: 10, succeeded: 10, failed: 0 } });
        await repo.create(batch);
        // Both writers read version 1 and race to commit version 2: the store lets exactly one through.
        const [finished, cancelling] = await Promise.all([
          repo.update(batch.key, 1, { status: 'completed', completedAt: now }),
          repo.update(batch.key, 1, { status: 'cancelling' }),
        ]);
        expect([finished, cancelling].filter((r) => r !== 'conflict')).toHaveLength(1);
        // The same race through the read-decide-write loop the runners use, then the runner's closing finalize.
        const other = newBatch({ status: 'processing', counts: { total: 10, processed: 10, succeeded: 10, failed: 0 } });
        await repo.create(other);
        await Promise.all([changeBatch(repo, other.key, finalize), changeBatch(repo, other.key, cancel)]);
        for (const key of [batch.key, other.key]) await changeBatch(repo, key, finalize);
        for (const key of [batch.key, other.key]) {
          const final = await repo.get(key);
          expect(final && isFinal(final.status)).toBe(true);
          // Finalize first ends it completed (or failed, where the store's counters say items are missing: a Parse
          // ledger counts recorded segments only); cancel first ends it cancelled. Never more than two changes.
          expect(['completed', 'failed', 'cancelled']).toContain(final!.status);
          expect(final!.version).toBeLessThanOrEqual(3);
        }
      }
    });

    it('records a segment outcome once, however often it is delivered', async () => {
      const batch = newBatch();
      await repo.create(batch);
      const outcome = { segment: 0, succeeded: 20, failed: 5, written: written(12, 5, 3) };
      const errors = Array.from({ length: 5 }, (_, i) => ({ index: i * 2, externalId: `x${i}`, error: 'rejected' }));
      const deliveries = await Promise.all([1, 2, 3].map(() => repo.recordSegment(batch.key, outcome, errors, 'w1')));
      expect(deliveries.filter((d) => d.applied)).toHaveLength(1);
      const second = await repo.recordSegment(batch.key, allCreated(1, 25, 0), [], 'w2');
      expect(second).toEqual({ applied: true, counts: { total: 100, processed: 50, succeeded: 45, failed: 5 } });
      expect((await repo.get(batch.key))?.counts).toEqual({ total: 100, processed: 50, succeeded: 45, failed: 5 });
      const segments = await repo.listSegments(batch.key);
      expect(segments.map((s) => [s.segment, s.workerId])).toEqual([[0, 'w1'], [1, 'w2']]);
      expect(segments.map((s) => s.written)).toEqual([written(12, 5, 3), written(25)]);
      expect(await repo.listErrors(batch.key, -1, 100)).toEqual(errors);
      expect((await repo.listErrors(batch.key, 4, 2)).map((e) => e.index)).toEqual([6, 8]);
    });

    it('reopens a final batch only through a redrive, whose outcomes move failed items to succeeded exactly once', async () => {
      const batch = newBatch({ status: 'processing', counts: { total: 50, processed: 0, succeeded: 0, failed: 0 } });
      await repo.create(batch);
      const errors = [1, 3, 5, 7].map((index) => ({ index, externalId: `r${index}`, error: 'store unavailable' }));
      await repo.recordSegment(batch.key, allCreated(0, 21, 4), errors, 'w1');
      await repo.recordSegment(batch.key, { segment: 1, succeeded: 25, failed: 0, written: written(20, 5) }, [], 'w1');
      const final = await changeBatch(repo, batch.key, (current) => finish(current, '2026-01-01T00:00:00.000Z').ok ? { status: 'completed', completedAt: '2026-01-01T00:00:00.000Z' } : undefined);
      expect(final).toMatchObject({ status: 'completed' });
      // Not a redrive (no next redrive number): refused as before.
      expect(await repo.update(batch.key, final!.version, { status: 'processing' })).toMatchObject({ kind: 'illegal_transition' });
      const reopened = await repo.update(batch.key, final!.version, { status: 'processing', completedAt: null, error: null, redrives: 1 });
      expect(reopened).toMatchObject({ status: 'processing', redrives: 1, completedAt: null });
      expect(await repo.get(batch.key)).toMatchObject({ status: 'processing', redrives: 1 });

      // Items 1 and 5 succeed now, 3 and 7 fail again; 9 never failed and moves nothing (nor its outcome). Delivered
      // three times at once.
      const recovered = [{ index: 1, outcome: 'created' }, { index: 5, outcome: 'updated' }, { index: 9, outcome: 'unchanged' }] as const;
      const outcome = { redrive: 1, segment: 0, recovered: [...recovered], failedAgain: [3, 7].map((index) => ({ index, externalId: `r${index}`, error: 'still down' })) };
      const deliveries = await Promise.all([1, 2, 3].map(() => repo.recordRedrive(batch.key, outcome, 'w2')));
      expect(deliveries.filter((d) => d.applied)).toHaveLength(1);
      expect((await repo.get(batch.key))?.counts).toEqual({ total: 50, processed: 50, succeeded: 48, failed: 2 });
      expect((await repo.get(batch.key))?.written).toEqual(written(42, 6, 0));
      expect(await repo.listErrors(batch.key, -1, 100)).toEqual([3, 7].map((index) => ({ index, externalId: `r${index}`, error: 'still down' })));
      expect(await repo.listRedriveSegments(batch.key, 1)).toEqual([0]);
      expect(await repo.listRedriveSegments(batch.key, 2)).toEqual([]);
      // The first run's ledger is as it was.
      expect((await repo.listSegments(batch.key)).map((s) => [s.segment, s.succeeded, s.failed])).toEqual([[0, 21, 4], [1, 25, 0]]);

      // Final again: a late redrive outcome is not recorded.
      const ended = await changeBatch(repo, batch.key, () => ({ status: 'completed', completedAt: '2026-01-02T00:00:00.000Z' }));
      expect(ended).toMatchObject({ status: 'completed', redrives: 1 });
      const late = await repo.recordRedrive(batch.key, { redrive: 1, segment: 1, recovered: [3, 7].map((index) => ({ index, outcome: 'created' as const })), failedAgain: [] }, 'w3');
      expect(late).toEqual({ applied: false, counts: { total: 50, processed: 50, succeeded: 48, failed: 2 } });
      expect((await repo.get(batch.key))?.written).toEqual(written(42, 6, 0));
      expect(await repo.delete(batch.key)).toBe(true);
      expect(await repo.listRedriveSegments(batch.key, 1)).toEqual([]);
    });

    it("keeps the ledger's counts under any order and duplication of segment outcomes", async () => {
      // Segment outcomes, then a delivery order in which each appears at least once and any may repeat (a retried
      // or duplicated activity; a repeat may even carry other numbers, as a re-run against a changed sink could).
      // Each outcome's succeeded items split by write outcome at random.
      const split = fc.record({ created: fc.nat(8), updated: fc.nat(6), unchanged: fc.nat(6) });
      const withSucceeded = ({ failed, written }: { failed: number; written: WriteCounts }) =>
        ({ succeeded: written.created + written.updated + written.unchanged, failed, written });
      const deliveries = fc
        .array(fc.record({ failed: fc.nat(5), written: split }).map(withSucceeded), { minLength: 1, maxLength: 6 })
        .chain((segments) => {
          const outcomes: SegmentOutcome[] = segments.map((s, segment) => ({ segment, ...s }));
          const repeat = fc.record({ segment: fc.nat(outcomes.length - 1), failed: fc.nat(5), written: split })
            .map(({ segment, ...rest }) => ({ segment, ...withSucceeded(rest) }));
          return fc.tuple(fc.constant(outcomes), fc.array(repeat, { maxLength: 6 })).chain(([first, repeats]) =>
            fc.shuffledSubarray([...first, ...repeats], { minLength: first.length + repeats.length }),
          );
        });
      await fc.assert(
        fc.asyncProperty(deliveries, async (order) => {
          const total = order.reduce((sum, o) => sum + o.succeeded + o.failed, 0);
          const batch = newBatch({ counts: { total, processed: 0, succeeded: 0, failed: 0 } });
          await repo.create(batch);
          let ledger = emptyLedger(total);
          for (const outcome of order) {
            const expected = recordOutcome(ledger, outcome);
            ledger = expected.ledger;
            const recorded = await repo.recordSegment(batch.key, outcome, [], 'w');
            expect(recorded).toEqual({ applied: expected.applied, counts: countsOf(ledger) });
          }
          expect((await repo.get(batch.key))?.counts).toEqual(countsOf(ledger));
          expect((await repo.get(batch.key))?.written).toEqual(writtenOf(ledger));
          expect((await repo.listSegments(batch.key)).map(({ segment, succeeded, failed, written }) => ({ segment, succeeded, failed, written })))
            .toEqual([...ledger.outcomes.values()].sort((a, b) => a.segment - b.segment));
        }),
        { numRuns: 8 },
      );
    });

    it("adds a segment's write outcomes with its counts in one step, once however often it is delivered", async () => {
      const batch = newBatch({ status: 'processing', counts: { total: 60, processed: 0, succeeded: 0, failed: 0 } });
      await repo.create(batch);
      expect((await repo.get(batch.key))?.written).toEqual(written(0));
      const first = { segment: 0, succeeded: 18, failed: 2, written: written(10, 5, 3) };
      const deliveries = await Promise.all([1, 2, 3].map(() => repo.recordSegment(batch.key, first, [], 'w1')));
      expect(deliveries.filter((d) => d.applied)).toHaveLength(1);
      expect(await repo.get(batch.key)).toMatchObject({ counts: { processed: 20, succeeded: 18 }, written: written(10, 5, 3) });
      // A repeat carrying other outcomes (a re-run that found its writes already made) changes nothing: the first wins.
      const repeat = await repo.recordSegment(batch.key, { segment: 0, succeeded: 20, failed: 0, written: written(0, 0, 20) }, [], 'w2');
      expect(repeat.applied).toBe(false);
      await repo.recordSegment(batch.key, { segment: 1, succeeded: 20, failed: 0, written: written(0, 0, 20) }, [], 'w2');
      const read = await repo.get(batch.key);
      expect(read).toMatchObject({ counts: { processed: 40, succeeded: 38, failed: 2 }, written: written(10, 5, 23) });
      // The list pages carry the same counts and outcomes.
      const listed = (await repo.list(batch.tenant.organization, { limit: 100 })).items.find((b) => b.key === batch.key);
      expect(listed).toMatchObject({ counts: read!.counts, written: read!.written });
    });

    it('refuses write outcomes that do not add up to succeeded, and changes nothing', async () => {
      const batch = newBatch({ status: 'processing' });
      await repo.create(batch);
      await expect(repo.recordSegment(batch.key, { segment: 0, succeeded: 10, failed: 0, written: written(9) }, [], 'w')).rejects.toThrow(RangeError);
      await expect(repo.recordSegment(batch.key, { segment: 0, succeeded: 10, failed: 0, written: written(12, -2) }, [], 'w')).rejects.toThrow(RangeError);
      expect(await repo.get(batch.key)).toMatchObject({ counts: { processed: 0, succeeded: 0 }, written: written(0) });
      expect(await repo.listSegments(batch.key)).toEqual([]);
      // The segment is still free to record.
      expect((await repo.recordSegment(batch.key, allCreated(0, 10, 0), [], 'w')).applied).toBe(true);
    });

    it("never shows a read with write outcomes apart from succeeded while segments are recorded", async () => {
      const segments = 12;
      const run = uniqueId('run');
      const batch = newBatch({ status: 'processing', metadata: { run }, counts: { total: segments * 10, processed: 0, succeeded: 0, failed: 0 } });
      await repo.create(batch);
      const apart: string[] = [];
      const look = (read: Batch | undefined, via: string) => {
        if (!read?.written) return apart.push(`${via}: no write outcomes`);
        const { created, updated, unchanged } = read.written;
        if (created + updated + unchanged !== read.counts.succeeded) apart.push(`${via}: ${JSON.stringify(read.written)} against succeeded ${read.counts.succeeded}`);
      };
      let recording = true;
      const reader = (async () => {
        let reads = 0;
        while (recording || reads < 2) {
          look(await repo.get(batch.key), 'get');
          look((await repo.list(batch.tenant.organization, { metadata: { run }, limit: 1 })).items[0], 'list');
          reads += 1;
        }
        return reads;
      })();
      // Four writers at once, each segment twice: 8 succeeded (split 3/3/2) and 2 failed.
      const queue = Array.from({ length: segments * 2 }, (_, i) => i % segments);
      await Promise.all(Array.from({ length: 4 }, async () => {
        for (let segment = queue.shift(); segment !== undefined; segment = queue.shift()) {
          await repo.recordSegment(batch.key, { segment, succeeded: 8, failed: 2, written: written(3, 3, 2) }, [], 'w');
        }
      }));
      recording = false;
      expect(await reader).toBeGreaterThan(1);
      expect(apart).toEqual([]);
      expect(await repo.get(batch.key)).toMatchObject({ counts: { processed: segments * 10, succeeded: segments * 8 }, written: written(segments * 3, segments * 3, segments * 2) });
    });

    it('keeps a batch stored without write outcomes (an earlier version) without them, its counts moving as before', async () => {
      const batch = newBatch({ status: 'processing', written: null });
      await repo.create(batch);
      expect((await repo.get(batch.key))?.written).toBeNull();
      expect((await repo.recordSegment(batch.key, allCreated(0, 10, 0), [], 'w')).applied).toBe(true);
      expect(await repo.get(batch.key)).toMatchObject({ counts: { processed: 10, succeeded: 10 }, written: null });
      expect((await repo.list(batch.tenant.organization, { limit: 100 })).items.find((b) => b.key === batch.key)?.written).toBeNull();
    });

    it('keeps counters and status updates independent', async () => {
      const batch = newBatch();
      await repo.create(batch);
      await repo.recordSegment(batch.key, allCreated(0, 10, 0), [], 'w');
      const updated = await repo.update(batch.key, 1, { status: 'processing' });
      expect(updated).not.toBe('conflict');
      expect((await repo.get(batch.key))?.counts.processed).toBe(10);
    });

    it('lists an organization’s batches newest first, by status, in pages', async () => {
      const organization = uniqueId('org');
      const tenant = { ...tenantA, organization };
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        const batch = newBatch({ tenant, createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() });
        ids.push(batch.id);
        await repo.create(batch);
        if (i % 2 === 0) await repo.update(batch.key, 1, { status: 'processing' });
      }
      await repo.create(newBatch({ tenant: { ...tenantB, organization: uniqueId('other') } }));
      const first = await repo.list(organization, { limit: 2 });
      expect(first.items.map((b) => b.id)).toEqual([ids[4], ids[3]]);
      expect(first.nextCursor).not.toBeNull();
      const second = await repo.list(organization, { limit: 2, cursor: first.nextCursor! });
      expect(second.items.map((b) => b.id)).toEqual([ids[2], ids[1]]);
      const third = await repo.list(organization, { limit: 2, cursor: second.nextCursor! });
      expect(third.items.map((b) => b.id)).toEqual([ids[0]]);
      expect(third.nextCursor).toBeNull();
      const processing = await repo.list(organization, { limit: 10, status: 'processing' });
      expect(processing.items.map((b) => b.id)).toEqual([ids[4], ids[2], ids[0]]);
      await expect(repo.list(organization, { limit: 2, cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidCursorError);
    });

    it('lists the batches that still need work', async () => {
      const pending = newBatch();
      const done = newBatch({ status: 'completed' });
      const owed = newBatch({
        status: 'completed',
        webhook: { url: 'https://example.com/h', secret: 'whsec_x', delivered: false, attempts: 1, lastError: 'boom' },
      });
      const exhausted = newBatch({
        status: 'failed',
        webhook: { url: 'https://example.com/h', secret: 'whsec_x', delivered: false, attempts: 8, lastError: 'boom' },
      });
      // The receiver refused for good (410): the loop gave up before running out of attempts.
      const refused = newBatch({
        status: 'completed',
        webhook: { url: 'https://example.com/h', secret: 'whsec_x', delivered: false, attempts: 1, lastError: '410', gaveUp: true },
      });
      for (const batch of [pending, done, owed, exhausted, refused]) await repo.create(batch);
      const keys = await repo.listNeedingWork(8);
      expect(keys).toContain(pending.key);
      expect(keys).toContain(owed.key);
      expect(keys).not.toContain(done.key);
      expect(keys).not.toContain(exhausted.key);
      expect(keys).not.toContain(refused.key);
    });

    it('counts unfinished batches by status and finds the oldest one', async () => {
      const before = await repo.backlog();
      const oldest = newBatch({ status: 'processing', createdAt: '1960-01-01T00:00:00.000Z' });
      const added = [newBatch(), newBatch(), oldest, newBatch({ status: 'cancelling' }), newBatch({ status: 'completed' }), newBatch({ status: 'failed' })];
      for (const batch of added) await repo.create(batch);
      const after = await repo.backlog();
      const delta = (status: 'pending' | 'processing' | 'cancelling' | 'completed') => (after.byStatus[status] ?? 0) - (before.byStatus[status] ?? 0);
      expect({ pending: delta('pending'), processing: delta('processing'), cancelling: delta('cancelling'), completed: delta('completed') })
        .toEqual({ pending: 2, processing: 1, cancelling: 1, completed: 0 });
      expect(after.oldestCreatedAt).toBe(oldest.createdAt);
      await repo.update(oldest.key, 1, { status: 'completed', completedAt: new Date().toISOString() });
      const later = await repo.backlog();
      expect(later.byStatus.processing ?? 0).toBe(before.byStatus.processing ?? 0);
      expect(later.oldestCreatedAt === null || later.oldestCreatedAt > oldest.createdAt).toBe(true);
    });

    it('lists finished batches past the retention cutoff, oldest first, until their payload is marked expired', async (context) => {
      if (!repo.listExpiredPayloads || !repo.markPayloadExpired) return context.skip('this adapter does not support payload retention');
      // Far-past timestamps, so that batches other tests left behind never fall before the cutoff.
      const finished = async (status: 'completed' | 'failed' | 'cancelled' | 'processing', completedAt: string | null) => {
        const batch = newBatch({ status, completedAt });
        await repo.create(batch);
        return batch;
      };
      const older = await finished('failed', '1970-01-01T00:00:02.000Z');
      const old = await finished('completed', '1970-01-01T00:00:03.000Z');
      const cancelled = await finished('cancelled', '1970-01-01T00:00:04.000Z');
      await finished('completed', '1970-01-01T00:00:09.000Z'); // after the cutoff
      await finished('processing', null);
      const cutoff = '1970-01-01T00:00:05.000Z';

      expect(await repo.listExpiredPayloads(cutoff, 10)).toEqual([
        { key: older.key, prefix: older.payload.prefix, completedAt: older.completedAt },
        { key: old.key, prefix: old.payload.prefix, completedAt: old.completedAt },
        { key: cancelled.key, prefix: cancelled.payload.prefix, completedAt: cancelled.completedAt },
      ]);
      expect((await repo.listExpiredPayloads(cutoff, 2)).map((e) => e.key)).toEqual([older.key, old.key]);

      await repo.markPayloadExpired(older.key, '2026-01-01T00:00:00.000Z');
      await repo.markPayloadExpired(older.key, '2026-01-01T00:00:01.000Z');
      await repo.markPayloadExpired(old.key, '2026-01-01T00:00:00.000Z');
      expect((await repo.listExpiredPayloads(cutoff, 10)).map((e) => e.key)).toEqual([cancelled.key]);
      // The record itself is untouched: counts and status stay.
      expect(await repo.get(old.key)).toEqual(old);
    });

    it('tells which payload prefixes a batch points at, whatever its status or payload expiry', async () => {
      const running = newBatch({ status: 'processing' });
      const expired = newBatch({ status: 'completed', completedAt: '1970-01-01T00:00:01.000Z' });
      await repo.create(running);
      await repo.create(expired);
      await repo.markPayloadExpired(expired.key, '1970-01-02T00:00:00.000Z');
      const unknown = `${tenantA.organization}/${uniqueId()}`;
      // A prefix that merely begins like a batch's is not that batch's.
      const longer = `${running.payload.prefix}x`;
      const answer = await repo.referencedPrefixes([running.payload.prefix, unknown, expired.payload.prefix, longer]);
      expect([...answer].sort()).toEqual([running.payload.prefix, expired.payload.prefix].sort());
      expect(await repo.referencedPrefixes([])).toEqual(new Set());
      await repo.delete(running.key);
      expect(await repo.referencedPrefixes([running.payload.prefix])).toEqual(new Set());
    });

    it('keeps a completion window, its deadline and metadata as given', async () => {
      const batch = newBatch({ completionWindow: '24h', expiresAt: '2026-01-02T00:00:00.000Z', metadata: { job: 'nightly-sync', source: 'crm' } });
      await repo.create(batch);
      expect(await repo.get(batch.key)).toMatchObject({ completionWindow: '24h', expiresAt: '2026-01-02T00:00:00.000Z', metadata: { job: 'nightly-sync', source: 'crm' } });
    });

    it('keeps the failure limits as given', async () => {
      const limited = newBatch({ failureLimits: { maxFailedItems: 10, maxFailedPercent: 2.5 } });
      await repo.create(limited);
      expect((await repo.get(limited.key))?.failureLimits).toEqual({ maxFailedItems: 10, maxFailedPercent: 2.5 });
    });

    it('keeps the batch option on_existing as given, and reads a batch without it back without it', async () => {
      const skipping = newBatch({ onExisting: 'skip' });
      const plain = newBatch();
      await repo.create(skipping);
      await repo.create(plain);
      expect((await repo.get(skipping.key))?.onExisting).toBe('skip');
      expect(await repo.get(plain.key)).toEqual(plain);
    });

    it('grows a streamed upload under compare-and-set (segments, total, upload state) and keeps its counters apart', async () => {
      const segment = { segments: 1, rawBytes: 100, storedBytes: 40, received: 1000 };
      const batch = newBatch({ invalidItems: 'record', upload: { complete: false, received: 1000 }, counts: { total: 1000, processed: 0, succeeded: 0, failed: 0 } });
      batch.payload = { ...batch.payload, segments: 1, rawBytes: 100, storedBytes: 40 };
      await repo.create(batch);
      expect(await repo.get(batch.key)).toEqual(batch);
      const began = await changeBatch(repo, batch.key, (current) => { const step = begin(current, '2026-01-01T00:00:00.000Z'); return step.ok ? step.value : undefined; });
      expect(began?.status).toBe('processing');
      await repo.recordSegment(batch.key, allCreated(0, 998, 2), [], 'w1');
      const grown = await changeBatch(repo, batch.key, (current) => {
        const step = uploadProgress(current, { ...segment, segments: 2, rawBytes: 210, storedBytes: 85, received: 1700 });
        return step.ok ? step.value : undefined;
      });
      expect(grown).toMatchObject({ payload: { segments: 2, rawBytes: 210, storedBytes: 85, prefix: batch.payload.prefix }, upload: { complete: false, received: 1700 } });
      expect(grown?.counts).toEqual({ total: 1700, processed: 1000, succeeded: 998, failed: 2 });
      const ended = await changeBatch(repo, batch.key, (current) => {
        const step = endUpload(current, { segments: 3, rawBytes: 300, storedBytes: 120, received: 2500 }, 'c0ffee');
        return step.ok ? step.value : undefined;
      });
      expect(ended).toMatchObject({ invalidItems: 'record', upload: { complete: true, received: 2500 }, payload: { segments: 3 } });
      const read = await repo.get(batch.key);
      // The fingerprint recorded as the upload ended is read back: a repeat of the request is compared with it.
      expect(read).toMatchObject({ upload: { complete: true, received: 2500, bodySha256: 'c0ffee' }, payload: { segments: 3, rawBytes: 300, storedBytes: 120 } });
      expect(read?.counts).toEqual({ total: 2500, processed: 1000, succeeded: 998, failed: 2 });
      expect((await repo.list(batch.tenant.organization, { limit: 100 })).items.find((b) => b.key === batch.key)?.counts.total).toBe(2500);
    });

    it('filters the list by metadata pairs, every pair matching, within the organization', async () => {
      const run = uniqueId('run');
      const crm = newBatch({ metadata: { run, source: 'crm' } });
      const erp = newBatch({ metadata: { run, source: 'erp', extra: 'x' } });
      const other = newBatch({ tenant: tenantB, metadata: { run, source: 'crm' } });
      for (const batch of [crm, erp, other]) await repo.create(batch);
      const ids = async (organization: string, metadata: Record<string, string>, status?: Batch['status']) =>
        (await repo.list(organization, { metadata, status, limit: 100 })).items.map((b) => b.id).sort();
      expect(await ids(tenantA.organization, { run })).toEqual([crm.id, erp.id].sort());
      expect(await ids(tenantA.organization, { run, source: 'erp' })).toEqual([erp.id]);
      expect(await ids(tenantA.organization, { run, source: 'none' })).toEqual([]);
      expect(await ids(tenantA.organization, { run }, 'completed')).toEqual([]);
      expect(await ids(tenantB.organization, { run })).toEqual([other.id]);
      const paged = await repo.list(tenantA.organization, { metadata: { run }, limit: 1 });
      expect(paged.items).toHaveLength(1);
      const rest = await repo.list(tenantA.organization, { metadata: { run }, limit: 1, cursor: paged.nextCursor! });
      expect([...paged.items, ...rest.items].map((b) => b.id).sort()).toEqual([crm.id, erp.id].sort());
      expect(rest.nextCursor).toBeNull();
    });

    it('deletes a batch with its ledger and item errors; deleting again is a no-op', async () => {
      const batch = newBatch();
      await repo.create(batch);
      await repo.update(batch.key, 1, { status: 'processing' });
      await repo.recordSegment(batch.key, allCreated(0, 9, 1), [{ index: 3, externalId: 'x', error: 'bad' }], 'w');
      expect(await repo.delete(batch.key)).toBe(true);
      expect(await repo.get(batch.key)).toBeUndefined();
      expect(await repo.listSegments(batch.key)).toEqual([]);
      expect(await repo.listErrors(batch.key, -1, 10)).toEqual([]);
      expect(await repo.delete(batch.key)).toBe(false);
      // The key can hold a new batch afterwards (a client reusing its id).
      expect((await repo.create(batch)).created).toBe(true);
      expect((await repo.get(batch.key))?.counts.processed).toBe(0);
    });

    it('records no segment outcome once the batch is final', async () => {
      const batch = newBatch({ counts: { total: 30, processed: 0, succeeded: 0, failed: 0 } });
      await repo.create(batch);
      await repo.update(batch.key, 1, { status: 'processing' });
      await repo.recordSegment(batch.key, { segment: 0, succeeded: 10, failed: 0, written: written(4, 3, 3) }, [], 'w');
      const current = (await repo.get(batch.key))!;
      await repo.update(batch.key, current.version, { status: 'expired', completedAt: new Date().toISOString() });
      const late = await repo.recordSegment(batch.key, allCreated(1, 9, 1), [{ index: 15, externalId: null, error: 'late' }], 'w');
      expect(late.applied).toBe(false);
      expect(late.counts).toMatchObject({ processed: 10, succeeded: 10, failed: 0 });
      expect((await repo.get(batch.key))?.counts).toEqual({ total: 30, processed: 10, succeeded: 10, failed: 0 });
      expect((await repo.get(batch.key))?.written).toEqual(written(4, 3, 3));
      expect((await repo.listSegments(batch.key)).map((s) => s.segment)).toEqual([0]);
    });

    it('answers its readiness check', async () => {
      await expect(repo.check()).resolves.toBeUndefined();
    });
  });
}
