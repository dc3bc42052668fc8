// Redeliver: a final batch's webhook is sent again (the receiver was down past the last attempt, answered 410, or
// lost the event), as the same event under the same `webhook-id`, with a fresh count of attempts.
import { type Batch, type Tenant, webhookDeliveryInProgress } from '../../domain/batch.ts';
import { tenantBatchKey } from './batch-key.ts';
import { isFinal } from '../../domain/lifecycle.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { changeBatch } from '../change-batch.ts';
import { type ErrorOf, notFound } from '../errors.ts';
import type { OrchestratedServices } from '../services.ts';

/**
 * Resets the batch's delivery state (not delivered, 0 attempts, no last error) and has the orchestrator run the
 * webhook loop again. `not_found`: no such batch for this tenant, or a batch submitted without a webhook;
 * `wrong_state`: the batch is not final yet (its webhook goes out when it is), or a delivery of its event is still in
 * progress (not delivered, retry loop not given up: `webhookDeliveryInProgress`). The check and the reset are one
 * compare-and-set on the record, so of two concurrent redelivers only one starts a loop.
 */
export async function redeliverWebhook(
  services: OrchestratedServices,
  tenant: Tenant,
  id: string,
): Promise<Result<Batch, ErrorOf<'not_found' | 'wrong_state'>>> {
  const ref = tenantBatchKey(tenant, id);
  if (!ref.ok) return err(ref.error);
  const key = ref.value;
  const batch = await services.batches.get(key);
  if (!batch) return err(notFound(`batch ${id}`));
  if (!batch.webhook.url || !batch.webhook.secret) return err(notFound(`a webhook for batch ${id}`));
  if (!isFinal(batch.status)) {
    return err({ kind: 'wrong_state', detail: `batch ${id} is ${batch.status}; its webhook is sent once it is final` });
  }
  let inProgress = false;
  const reset = await changeBatch(services.batches, key, (current) => {
    inProgress = webhookDeliveryInProgress(current.webhook, services.settings.webhookMaxAttempts);
    if (inProgress) return undefined;
    return { webhook: { ...current.webhook, delivered: false, attempts: 0, lastError: null, gaveUp: false } };
  });
  if (!reset) return err(notFound(`batch ${id}`));
  if (inProgress) return err({ kind: 'wrong_state', detail: `batch ${id}: a delivery is in progress` });
  await services.orchestrator.redeliver(key, { organization: reset.tenant.organization });
  return ok(reset);
}
