// Checks shared by the reliability tests: every memory stored once, the webhook delivered once as a logical event,
// no secret in the output.
import { expectCounts } from './api-client.ts';
import { expect } from 'vitest';
import type { ApiClient, BatchJson } from './api-client.ts';
import { storedMemories } from './data-folder.ts';
import type { WebhookReceiver } from './webhook-receiver.ts';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The batch completed with exact counts, the sink holds each of its memories once, and results list each index once. */
export async function expectEveryMemoryOnce(api: ApiClient, dataDir: string, organization: string, batch: BatchJson, total: number): Promise<void> {
  expect(batch.status).toBe('completed');
  expectCounts(batch.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
  expect(storedMemories(dataDir, organization, batch.id)).toEqual({ rows: total, distinctIndexes: total, distinctIds: total });
  const results = await api.all<{ index: number; memory_id: string; status: string }>(`/v1/batch/${batch.id}/results`);
  expect(results.length).toBe(total);
  expect(results.every((r, i) => r.index === i && r.status === 'succeeded')).toBe(true);
  expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
}

/**
 * Every delivery for the batch verified and carried the same webhook-id (one logical event), and exactly one was
 * accepted. Returns the deliveries, for the caller's own checks.
 */
export function expectWebhookExactlyOnce(receiver: WebhookReceiver, batchId: string, status = 'completed') {
  const deliveries = receiver.deliveries.filter((d) => d.payload.data.id === batchId);
  expect(deliveries.length).toBeGreaterThan(0);
  expect(deliveries.every((d) => d.verified)).toBe(true);
  expect(new Set(deliveries.map((d) => d.id)).size).toBe(1);
  expect(deliveries.every((d) => d.payload.type === `batch.${status}`)).toBe(true);
  expect(receiver.accepted(batchId)).toHaveLength(1);
  return deliveries;
}

/** Nothing secret in a text (the server's output, a metrics page, a response). */
export function expectNoSecrets(text: string, secrets: string[]): void {
  for (const secret of secrets) {
    expect(secret.length).toBeGreaterThanOrEqual(16);
    if (text.includes(secret)) throw new Error(`a secret (${secret.slice(0, 6)}…) appears in the text`);
  }
}

export function webhookSecretParts(secret: string): string[] {
  return [secret, secret.slice('whsec_'.length)];
}
