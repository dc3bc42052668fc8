// Single add: one memory stored as a one-memory batch, waited for a bounded time so the caller usually gets the
// stored memory back in the same answer (the way Papr's `POST /v1/memory` answers).
import { type Batch, batchKey, isFinal } from '../../domain/batch.ts';
import { isCompleted } from '../../domain/lifecycle.ts';
import { memoryId } from '../../domain/memory.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { OrchestratedServices } from '../services.ts';
import type { AppError } from '../errors.ts';
import { type SubmitInput, type SubmitOutcome, submitBatch } from './submit-batch.ts';
import { watchBatch } from './watch-batch.ts';

export type AddOutcome = SubmitOutcome & {
  /**
   * The id the memory has in the sink once stored: the one it was stored under (an update of a memory with the same
   * `external_id` keeps that memory's id). Before that, the id derived from the batch, which it will have if it is new.
   */
  memoryId: string;
  /** `stored`: in the sink; `waiting`: not final within the wait; `refused`: the item or the batch failed. */
  state: 'stored' | 'waiting' | 'refused';
  /** Why the memory was not stored, when `state` is `refused`. */
  reason?: string;
};

/** Submits `item` as a batch of one and waits up to `waitMs` for it to become final. */
export async function addMemory(
  services: OrchestratedServices,
  input: Omit<SubmitInput, 'items'> & { item: unknown },
  waitMs: number,
): Promise<Result<AddOutcome, AppError>> {
  const items = (async function* () {
    yield input.item;
  })();
  const submitted = await submitBatch(services, { ...input, items });
  if (!submitted.ok) return err(submitted.error);
  const outcome = submitted.value;
  let batch: Batch = outcome.batch;
  if (!isFinal(batch.status)) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), waitMs);
    try {
      for await (const seen of watchBatch(services, batchKey(batch.tenant.organization, batch.id), abort.signal)) batch = seen;
    } finally {
      clearTimeout(timer);
    }
  }
  const id = memoryId(batch.key, 0);
  if (!isFinal(batch.status)) return ok({ ...outcome, batch, memoryId: id, state: 'waiting' });
  if (isCompleted(batch.status) && batch.counts.succeeded === 1) {
    // An update keeps the id of the memory it updated, which the derived id is not.
    const [stored] = await services.sink.listByBatch(batch.key, -1, 1);
    return ok({ ...outcome, batch, memoryId: stored?.memoryId ?? id, state: 'stored' });
  }
  const [itemError] = await services.batches.listErrors(batch.key, -1, 1);
  const reason = itemError?.error ?? batch.error ?? `the batch is ${batch.status}`;
  return ok({ ...outcome, batch, memoryId: id, state: 'refused', reason });
}
