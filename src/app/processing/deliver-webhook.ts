// One delivery attempt of a batch's final webhook, recorded on the batch. The caller owns the retry policy.
import { isFinal } from '../../domain/lifecycle.ts';
import { backoffMs, mayRetry } from '../../domain/retry-policy.ts';
import type { DeliveryAttempt } from '../../ports/webhook-notifier.ts';
import { batchResource, outcomesOf } from '../batch-resource.ts';
import type { Services } from '../services.ts';
import { changeBatch } from '../change-batch.ts';
import { withSpan } from '../tracing.ts';

export type WebhookStep = { status: 'nothing_to_send' } | { status: 'attempted'; attempt: DeliveryAttempt; attempts: number };

export async function deliverWebhook(services: Services, key: string): Promise<WebhookStep> {
  const batch = await services.batches.get(key);
  if (!batch || !isFinal(batch.status) || !batch.webhook.url || !batch.webhook.secret || batch.webhook.delivered) {
    return { status: 'nothing_to_send' };
  }
  const type = `batch.${batch.status}`;
  // The event is the batch's outcome, the same bytes on every attempt (Standard Webhooks: a retry resends the same
  // message under its id). How its delivery is going lives on the batch (GET /v1/batch/{id}), not in the event.
  const { webhook: _deliveryState, ...outcome } = batchResource(batch, await outcomesOf(services, batch));
  const { url, secret } = batch.webhook;
  const attempt = await withSpan('batchmem.webhook.deliver', { 'batchmem.batch_key': key, 'batchmem.webhook.attempt': batch.webhook.attempts + 1 }, () =>
    services.webhooks.send({
      url,
      secret,
      // One logical event per batch, run and final status: every retry carries the same id; a redrive's end is a
      // new event with an id of its own.
      messageId: batch.redrives ? `msg_${batch.key}_redrive${batch.redrives}_${batch.status}` : `msg_${batch.key}_${batch.status}`,
      payload: {
        type,
        timestamp: batch.completedAt ?? services.clock.now().toISOString(),
        data: outcome,
        // Papr receivers read these at the top level. No per-memory list: results are a link away, so the body
        // stays small whatever the batch size.
        batch_id: batch.id,
        status: batch.status,
        total_memories: batch.counts.total,
        successful_memories: batch.counts.succeeded,
        failed_memories: batch.counts.failed,
        results_url: `/v1/batch/${batch.id}/results`,
        errors_url: `/v1/batch/${batch.id}/errors`,
      },
    }),
  );
  services.observer?.webhookAttempted(attempt.delivered ? 'delivered' : attempt.retryable ? 'failed' : 'rejected'); // literal: delivery results
  const updated = await changeBatch(services.batches, key, (current) => {
    const attempts = current.webhook.attempts + 1;
    const delivered = current.webhook.delivered || attempt.delivered;
    return {
      webhook: {
        ...current.webhook,
        delivered,
        attempts,
        lastError: attempt.delivered ? null : attempt.error,
        // The retry loop (retryDelivery) stops after this attempt by the same rule: the record says so, which is what
        // lets a redelivery tell a loop still retrying from one that ended.
        gaveUp: !delivered && !mayRetry({ maxAttempts: services.settings.webhookMaxAttempts }, attempts, attempt.retryable),
      },
    };
  });
  return { status: 'attempted', attempt, attempts: updated?.webhook.attempts ?? 0 };
}

/** The wait after the `attempt`-th failed delivery: the product's one backoff (domain/retry-policy.ts). */
export function webhookDelayMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return backoffMs({ initialDelayMs: baseMs, maxDelayMs: maxMs }, attempt, random);
}
