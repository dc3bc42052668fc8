// Redrive: a final batch is reopened and its failed items (and any a stopped run never reached) are processed again.
import { type Batch, type Tenant, workflowIdFor } from '../../domain/batch.ts';
import { tenantBatchKey } from './batch-key.ts';
import { reopen, type ReopenRefusal } from '../../domain/lifecycle.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { OrchestratedServices } from '../services.ts';
import { type ErrorOf, notFound } from '../errors.ts';
import { changeBatch } from '../change-batch.ts';

/**
 * `POST /v1/batch/{id}/retry`. The reopen is a compare-and-set on the batch's version (domain/lifecycle.ts `reopen`),
 * so of two retries sent at once one reopens the batch and the other finds it processing: 409. A retry of a batch
 * that is still running is 409 too (its run has not ended, nothing to redrive yet); so is one of a cancelled or
 * expired batch, or of a batch whose items all succeeded. Each redrive is a new run under a new workflow id and ends
 * with a new webhook event (a new `webhook-id`); the items that succeeded before are not touched.
 */
export async function retryBatch(
  services: OrchestratedServices,
  tenant: Tenant,
  id: string,
): Promise<Result<Batch, ErrorOf<'not_found' | 'wrong_state'>>> {
  const ref = tenantBatchKey(tenant, id);
  if (!ref.ok) return err(ref.error);
  const key = ref.value;
  let refusal: ReopenRefusal | undefined;
  let reopened = false;
  const batch = await changeBatch(services.batches, key, (current) => {
    const step = reopen(current);
    if (!step.ok) {
      refusal = step.error;
      reopened = false;
      return undefined;
    }
    refusal = undefined;
    reopened = true;
    return {
      ...step.value,
      workflowId: workflowIdFor(key, step.value.redrives),
      // A new event is owed for the redrive's end; the first run's delivery state is history.
      webhook: { ...current.webhook, delivered: false, attempts: 0, lastError: null },
    };
  });
  if (!batch) return err(notFound(`batch ${id}`));
  if (!reopened || refusal) {
    const detail = refusal?.kind === 'nothing_to_redrive'
      ? `batch ${id} has no failed memories to retry`
      : refusal?.kind === 'upload_open'
        ? `batch ${id} is ${batch.status} but its upload is still open; retry once the whole body is stored`
        : `batch ${id} is ${batch.status}; only a completed or failed batch can be retried`;
    return err({ kind: 'wrong_state', detail });
  }
  await services.orchestrator.start(key, { redrive: batch.redrives ?? 0, organization: batch.tenant.organization });
  return ok(batch);
}
