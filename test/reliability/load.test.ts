// Load on embedded defaults: many clients at once, each submitting a batch and following its progress over SSE to
// the end. Every batch completes, every stream ends with `done`, no request gets a 5xx, no memory is lost or doubled.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, apiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { serverErrorCounts, storedMemories } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { expectNoSecrets, expectWebhookExactlyOnce, webhookSecretParts } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

// `npm run test:soak` (BATCHMEM_SOAK=1) sends ten times as many memories per client.
const soak = process.env.BATCHMEM_SOAK === '1';
const clients = Number(process.env.BATCHMEM_LOAD_CLIENTS ?? 50);
const memoriesPerClient = Number(process.env.BATCHMEM_LOAD_MEMORIES ?? (soak ? 10_000 : 1000));

describe(`load: ${clients} concurrent clients x ${memoriesPerClient} memories, each following SSE to the end`, () => {
  const keys = testKeys();
  const dir = tempDir();
  const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
  let server: ServerProcess;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    receiver = await webhookReceiver(webhookSecret);
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_SEGMENT_MAX_ITEMS: '250' });
    await server.start();
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
    dir.remove();
  });

  it('completes every batch with exact counts, ends every stream with done, and answers no 5xx', async () => {
    const startedAt = performance.now();
    const statuses: number[] = [];
    const runs = Array.from({ length: clients }, async (_, client) => {
      // Clients alternate between the two tenants.
      const key = keys[client % 2]!;
      const api = apiClient(server.url, key.key);
      const id = `load-${client}`;
      // Half the clients send JSON, half stream NDJSON.
      const response =
        client % 4 < 2
          ? await api.submitJson({
              memories: Array.from({ length: memoriesPerClient }, (_, i) => memory(i, `client ${client}`)),
              batch_id: id,
              webhook_url: receiver.url,
              webhook_secret: webhookSecret,
            })
          : await api.submitNdjson(
              ndjsonStream(memoriesPerClient, (i) => memory(i, `client ${client}`)),
              `?batch_id=${id}&webhook_url=${encodeURIComponent(receiver.url)}`,
              { 'webhook-secret': webhookSecret },
            );
      statuses.push(response.status);
      expect(response.status, await response.clone().text()).toBe(202);
      const stream = await api.events(id);
      statuses.push(stream.status);
      return { id, organization: key.organization, api, stream };
    });
    const finished = await Promise.all(runs);
    const elapsedMs = performance.now() - startedAt;

    for (const { id, organization, api, stream } of finished) {
      expect(stream.status).toBe(200);
      expect(stream.names.at(-1), `stream of ${id}`).toBe('done');
      expect(stream.names.slice(0, -1).every((name) => name === 'progress')).toBe(true);
      expect(stream.last?.status).toBe('completed');
      expectCounts(stream.last?.request_counts, { total: memoriesPerClient, processed: memoriesPerClient, succeeded: memoriesPerClient, failed: 0, expired: 0 });
      expect(storedMemories(dir.path, organization, id)).toEqual({ rows: memoriesPerClient, distinctIndexes: memoriesPerClient, distinctIds: memoriesPerClient });
      const results = await api.all<{ index: number; memory_id: string }>(`/v1/batch/${id}/results`);
      expect(results.map((r) => r.index)).toEqual(Array.from({ length: memoriesPerClient }, (_, i) => i));
    }
    for (const { id } of finished) {
      await receiver.waitFor(id);
      expectWebhookExactlyOnce(receiver, id);
    }
    expect(statuses.filter((status) => status >= 500)).toEqual([]);
    expect(await serverErrorCounts(server.url)).toEqual({});
    expectNoSecrets(server.output(), [...keys.map((k) => k.key), ...webhookSecretParts(webhookSecret)]);
    const total = clients * memoriesPerClient;
    console.log(`[load] ${clients} clients x ${memoriesPerClient} memories = ${total} in ${(elapsedMs / 1000).toFixed(1)} s (${Math.round(total / (elapsedMs / 1000))} memories/s), 0 lost, 0 duplicated, 0 5xx`);
  });
});
