// Cancel: a pending or processing batch moves to cancelling; the orchestrator stops scheduling its segments.
import { batchIdPattern, batchKey, type Batch, type Tenant } from '../../domain/batch.ts';
import { isFinal, requestCancel } from '../../domain/lifecycle.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { OrchestratedServices } from '../services.ts';
import { type ErrorOf, notFound } from '../errors.ts';
import { changeBatch } from '../change-batch.ts';

export async function cancelBatch(ctx: OrchestratedServices, tenant: Tenant, id: string): Promise<Result<Batch, ErrorOf<'not_found' | 'conflict'>>> {
  if (!batchIdPattern.test(id)) return err(notFound(`batch ${id.slice(0, 64)}`));
  const key = batchKey(tenant.organization, id);
  // Cancelling already, or final: nothing to write; a final batch is answered with a conflict below.
  const batch = await changeBatch(ctx.batches, key, (current) => {
    const step = requestCancel(current);
    return step.ok ? step.value : undefined;
  });
  if (!batch) return err(notFound(`batch ${id}`));
  if (isFinal(batch.status)) return err({ kind: 'conflict', detail: `batch ${id} is already ${batch.status}` });
  await ctx.orchestrator.cancel(key);
  return ok((await ctx.batches.get(key)) ?? batch);
}
