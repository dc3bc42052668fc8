// Moves a pending batch to processing and tells the runner what there is to do.
import { type BatchStatus, canTransition } from '../../domain/batch.ts';
import type { Counts } from '../../domain/progress.ts';
import type { Context } from '../context.ts';
import { changeBatch } from './change-batch.ts';

export interface BatchPlan {
  status: BatchStatus;
  segments: number;
  /** Segments whose outcome is already recorded (a resumed run skips them). */
  doneSegments: number[];
  /** The stored counters when the plan was made. */
  counts: Counts;
}

export async function beginBatch(ctx: Context, key: string): Promise<BatchPlan | undefined> {
  const batch = await changeBatch(ctx.batches, key, (current) =>
    current.status === 'pending' && canTransition('pending', 'processing')
      ? { status: 'processing', startedAt: ctx.clock.now().toISOString() }
      : undefined,
  );
  if (!batch) return undefined;
  const done = batch.status === 'processing' ? (await ctx.batches.listSegments(key)).map((s) => s.segment) : [];
  return { status: batch.status, segments: batch.payload.segments, doneSegments: done, counts: batch.counts };
}
