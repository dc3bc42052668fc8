// Decides a batch's final status once no more segments will run.
import type { Batch } from '../../domain/batch.ts';
import { finish } from '../../domain/lifecycle.ts';
import type { Services } from '../services.ts';
import { changeBatch } from '../change-batch.ts';

/**
 * `failure` is the reason the run gave up (a corrupt segment, exhausted retries), if it did. A batch that is pending
 * (never begun) or already final is left as it is; the lifecycle's `finish` decides the final status.
 */
export async function finalizeBatch(services: Services, key: string, failure?: string): Promise<Batch | undefined> {
  let finished = false;
  const batch = await changeBatch(services.batches, key, (current) => {
    const step = finish(current, services.clock.now().toISOString(), failure);
    finished = step.ok;
    return step.ok ? step.value : undefined;
  });
  if (finished && batch) services.observer?.batchFinished(batch.status, 0);
  return batch;
}
