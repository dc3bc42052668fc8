// Decides a batch's final status once no more segments will run.
import { type Batch, isFinal } from '../../domain/batch.ts';
import { isComplete } from '../../domain/progress.ts';
import type { BatchPatch } from '../../ports/batch-repository.ts';
import type { Context } from '../context.ts';
import { changeBatch } from './change-batch.ts';

/** `failure` is the reason the run gave up (a corrupt segment, exhausted retries), if it did. */
export async function finalizeBatch(ctx: Context, key: string, failure?: string): Promise<Batch | undefined> {
  let finished = false;
  const batch = await changeBatch(ctx.batches, key, (batch): BatchPatch | undefined => {
    finished = false;
    if (isFinal(batch.status)) return undefined;
    const completedAt = ctx.clock.now().toISOString();
    if (batch.status === 'pending') return undefined;
    finished = true;
    if (batch.status === 'cancelling') return { status: 'cancelled', completedAt };
    if (failure) return { status: 'failed', completedAt, error: failure };
    if (isComplete(batch.counts)) return { status: 'completed', completedAt };
    const missing = batch.counts.total - batch.counts.processed;
    return { status: 'failed', completedAt, error: `${missing} memories have no outcome` };
  });
  if (finished && batch) ctx.observer?.batchFinished(batch.status);
  return batch;
}
