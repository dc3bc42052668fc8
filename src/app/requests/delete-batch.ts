// Delete: a final batch's payload segments and record go; the memories it stored stay in the memory store.
import type { Tenant } from '../../domain/batch.ts';
import { tenantBatchKey } from './batch-key.ts';
import { isFinal } from '../../domain/lifecycle.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type ErrorOf, notFound } from '../errors.ts';
import type { Services } from '../services.ts';

/**
 * Refused with a conflict while the batch can still change (a runner owes it work). The payload goes first: a crash
 * in between leaves a record whose delete can be repeated, never segments that no record points to.
 */
export async function deleteBatch(services: Services, tenant: Tenant, id: string): Promise<Result<{ payloadObjects: number }, ErrorOf<'not_found' | 'wrong_state'>>> {
  const ref = tenantBatchKey(tenant, id);
  if (!ref.ok) return err(ref.error);
  const key = ref.value;
  const batch = await services.batches.get(key);
  if (!batch || batch.tenant.organization !== tenant.organization) return err(notFound(`batch ${id}`));
  if (!isFinal(batch.status)) {
    return err({ kind: 'wrong_state', detail: `batch ${id} is ${batch.status}; cancel it and delete it once it is final` });
  }
  const payloadObjects = await services.payloads.deletePrefix(batch.payload.prefix);
  await services.batches.delete(key);
  return ok({ payloadObjects });
}
