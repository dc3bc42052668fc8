// The batch resource's `created + updated + unchanged` equals its `succeeded` even while the batch runs elsewhere: the
// sink holds a segment's writes a moment before the ledger counts the segment, and a read between the two is
// completed by reading the side that is behind again (src/app/batch-resource.ts, withOutcomes).
import { describe, expect, it } from 'vitest';
import type { Batch } from '../../src/domain/batch.ts';
import type { WriteCounts } from '../../src/domain/progress.ts';
import { withOutcomes } from '../../src/app/batch-resource.ts';

const batchWith = (succeeded: number, status = 'processing') =>
  ({ key: 'k', status, counts: { total: 3000, processed: succeeded, succeeded, failed: 0 } }) as unknown as Batch;
const written = (created: number): WriteCounts => ({ created, updated: 0, unchanged: 0 });

/** A sink and a ledger that answer from scripts, one answer per read (the last one repeats). */
function stores(sinkAnswers: number[], ledgerAnswers: number[]) {
  const reads = { sink: 0, ledger: 0 };
  return {
    reads,
    services: {
      sink: { countOutcomes: async () => written(sinkAnswers[Math.min(reads.sink++, sinkAnswers.length - 1)]!) },
      batches: { get: async () => batchWith(ledgerAnswers[Math.min(reads.ledger++, ledgerAnswers.length - 1)]!) },
    } as never,
  };
}

describe('withOutcomes', () => {
  it('reads both again while the sink is ahead of the counts, until they agree', async () => {
    // Each time the ledger catches up, another segment has been written: agreement comes on the third look.
    const { services, reads } = stores([2000, 2500, 2500], [2000, 2500]);
    const view = await withOutcomes(services, batchWith(1000));
    expect(view.batch.counts.succeeded).toBe(2500);
    expect(view.written).toEqual(written(2500));
    expect(reads).toEqual({ sink: 3, ledger: 2 });
  });

  it('answers with one read of each when they agree', async () => {
    const { services, reads } = stores([2000], []);
    const view = await withOutcomes(services, batchWith(2000));
    expect(view.written).toEqual(written(2000));
    expect(reads).toEqual({ sink: 1, ledger: 0 });
  });

  it('answers at once for a final batch, and gives up after a bounded number of reads', async () => {
    const final = stores([5], []);
    expect((await withOutcomes(final.services, batchWith(3, 'completed'))).written).toEqual(written(5));
    expect(final.reads).toEqual({ sink: 1, ledger: 0 });
    const apart = stores([5], [3]);
    const view = await withOutcomes(apart.services, batchWith(3));
    expect(view.written).toEqual(written(5));
    expect(apart.reads.ledger).toBe(40);
  });
});
