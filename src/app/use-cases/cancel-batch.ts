// Cancel: a pending or processing batch moves to cancelling; the orchestrator stops scheduling its segments.
import { batchKey, type Batch, type Tenant, isFinal } from '../../domain/batch.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { OrchestratedContext } from '../context.ts';
import { type AppError, notFound } from '../errors.ts';
import { changeBatch } from './change-batch.ts';

export async function cancelBatch(ctx: OrchestratedContext, tenant: Tenant, id: string): Promise<Result<Batch, AppError>> {
  const key = batchKey(tenant.organization, id);
  const batch = await changeBatch(ctx.batches, key, (current) =>
    current.status === 'pending' || current.status === 'processing' ? { status: 'cancelling' } : undefined,
  );
  if (!batch) return err(notFound(`batch ${id}`));
  if (isFinal(batch.status)) return err({ kind: 'conflict', detail: `batch ${id} is already ${batch.status}` });
  await ctx.orchestrator.cancel(key);
  return ok((await ctx.batches.get(key)) ?? batch);
}
