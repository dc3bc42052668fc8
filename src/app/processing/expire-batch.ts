// Ends a batch whose completion window passed before it was final: the lifecycle's `expire` step decides.
import type { Batch } from '../../domain/batch.ts';
import { expire, expiredItems } from '../../domain/lifecycle.ts';
import { changeBatch } from '../change-batch.ts';
import type { Services } from '../services.ts';

/**
 * Called by a runner's deadline timer. A batch that is final already, cancelling (it ends cancelled), or without a
 * window is left as it is; the answer is the record as it stands afterwards, or undefined when it does not exist.
 * Items processed so far keep their outcome; the rest count as expired (`expiredItems`).
 */
export async function expireBatch(services: Services, key: string): Promise<Batch | undefined> {
  let expired = false;
  const batch = await changeBatch(services.batches, key, (current) => {
    if (!current.expiresAt) return undefined;
    const step = expire(current, services.clock.now().toISOString(), current.completionWindow ?? 'the batch');
    expired = step.ok;
    return step.ok ? step.value : undefined;
  });
  if (expired && batch) services.observer?.batchFinished(batch.status, expiredItems(batch));
  return batch;
}

/** Milliseconds until the batch's deadline (at most 0 once it passed), or undefined for a batch without one. */
export function msUntilExpiry(batch: { expiresAt?: string | null | undefined }, nowMs: number): number | undefined {
  return !batch.expiresAt ? undefined : Math.max(0, Date.parse(batch.expiresAt) - nowMs);
}
