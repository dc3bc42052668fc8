// Cancel: a pending or processing batch moves to cancelling; the orchestrator stops scheduling its segments.
import type { Batch, Tenant } from '../../domain/batch.ts';
import { tenantBatchKey } from './batch-key.ts';
import { isFinal, requestCancel } from '../../domain/lifecycle.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { OrchestratedServices } from '../services.ts';
import { type ErrorOf, notFound } from '../errors.ts';
import { changeBatch } from '../change-batch.ts';

export async function cancelBatch(services: OrchestratedServices, tenant: Tenant, id: string): Promise<Result<Batch, ErrorOf<'not_found' | 'wrong_state'>>> {
  const ref = tenantBatchKey(tenant, id);
  if (!ref.ok) return err(ref.error);
  const key = ref.value;
  // Cancelling already, or final: nothing to write; a final batch is answered with a conflict below.
  const batch = await changeBatch(services.batches, key, (current) => {
    const step = requestCancel(current);
    return step.ok ? step.value : undefined;
  });
  if (!batch) return err(notFound(`batch ${id}`));
  if (isFinal(batch.status)) return err({ kind: 'wrong_state', detail: `batch ${id} is already ${batch.status}` });
  await services.orchestrator.cancel(key, { redrive: batch.redrives ?? 0 });
  return ok((await services.batches.get(key)) ?? batch);
}
