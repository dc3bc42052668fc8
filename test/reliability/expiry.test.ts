// Completion windows against a pipeline that stops answering: the memory sink serves two segment writes and then
// never answers again. With `completion_window: "10s"` the batch must end `expired` within a few seconds of its
// deadline, keep the items processed by then, count the rest as expired, and send a verified `batch.expired`
// webhook: on the in-process runner, and on Temporal with a separate worker process (a workflow timer, not a timeout).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, apiClient, type ApiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, type TemporalBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const total = 3000;
const segmentItems = 100;
const answeredSegments = 2;

for (const orchestrator of ['local', 'temporal'] as const) {
  describe(`a batch whose sink stops answering expires at its completion window (${orchestrator})`, () => {
    const keys = testKeys();
    const secret = 'whsec_' + randomBytes(32).toString('base64');
    const dir = tempDir();
    let temporal: TemporalBackend | undefined;
    let worker: ServerProcess | undefined;
    let server: ServerProcess;
    let receiver: WebhookReceiver;
    let api: ApiClient;

    beforeAll(async () => {
      receiver = await webhookReceiver(secret);
      const env: Record<string, string> = {
        ...commonEnv(keys),
        BATCHMEM_DATA_DIR: dir.path,
        BATCHMEM_SEGMENT_MAX_ITEMS: String(segmentItems),
        BATCHMEM_FAULT_SINK_STALL_AFTER: String(answeredSegments),
        BATCHMEM_ORCHESTRATOR: orchestrator,
      };
      if (orchestrator === 'temporal') {
        temporal = await startTemporal();
        Object.assign(env, { TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, TEMPORAL_TASK_QUEUE: uniqueId('expiry') });
        // Segments run in the worker: its sink is the one that stops answering.
        worker = await startWorkerProcess(env, 'expiry-worker');
      }
      server = await serverProcess(env);
      await server.start();
      api = apiClient(server.url, keys[0]!.key);
    });
    printLogsOnFailure(() => (temporal ? [temporal] : []));

    afterAll(async () => {
      // A stalled sink write never settles: the processes are killed, not asked to drain.
      await worker?.kill();
      await server?.kill();
      await receiver?.close();
      await temporal?.stop();
      dir.remove();
    });

    it('ends expired within a few seconds of the window, counts adding up, with a verified batch.expired webhook', async () => {
      const id = uniqueId('expiring');
      const query = `?batch_id=${id}&completion_window=10s&webhook_url=${encodeURIComponent(receiver.url)}&metadata[job]=expiry-test`;
      const response = await api.submitNdjson(ndjsonStream(total, (i) => memory(i)), query, { 'webhook-secret': secret });
      expect(response.status, await response.clone().text()).toBe(202);
      const submitted = (await response.json()) as { expires_at: string; created_at: string };
      expect(Date.parse(submitted.expires_at) - Date.parse(submitted.created_at)).toBe(10_000);

      // Before the window: processing, stuck after the segments the sink answered.
      await expect.poll(async () => (await api.get(id)).request_counts.processed, { timeout: 30_000 }).toBe(answeredSegments * segmentItems);
      expect((await api.get(id)).status).toBe('processing');

      const done = await api.waitForFinal(id, 60_000);
      const observedAt = Date.now();
      expect(done.status).toBe('expired');
      const expiresAt = Date.parse(submitted.expires_at);
      const completedAt = Date.parse((done as unknown as { completed_at: string }).completed_at);
      const lateMs = completedAt - expiresAt;
      console.info(`[expiry ${orchestrator}] expired ${lateMs} ms after the deadline (observed ${observedAt - expiresAt} ms after)`);
      expect(lateMs).toBeGreaterThanOrEqual(0);
      // The timer, the grace given to the writes in flight (2 s, which a stalled sink uses up) and the final write.
      expect(lateMs).toBeLessThan(6_000);
      const { succeeded, failed, expired } = done.request_counts;
      expectCounts(done.request_counts, { total, processed: answeredSegments * segmentItems, succeeded: answeredSegments * segmentItems, failed: 0, expired: total - answeredSegments * segmentItems });
      expect(succeeded + failed + expired).toBe(total);
      expect(done.error).toContain('completion window of 10s');

      const delivery = await receiver.waitFor(id, 60_000);
      expect(delivery.verified).toBe(true);
      expect(delivery.payload.type).toBe('batch.expired');
      expect(delivery.payload.data.status).toBe('expired');
      expect(delivery.payload.data.request_counts).toMatchObject({ succeeded, failed, expired, total });

      // The outcome files agree: the processed items succeeded, every other item is listed as expired.
      const lines = (await (await api.request(`/v1/batch/${id}/results.ndjson`)).text()).trim().split('\n').map((l) => JSON.parse(l) as { index: number; outcome: string });
      expect(lines).toHaveLength(total);
      expect(lines.filter((l) => l.outcome === 'succeeded')).toHaveLength(succeeded);
      expect(lines.filter((l) => l.outcome === 'expired')).toHaveLength(expired);
      // Listed by its metadata, as an expired batch.
      const listed = (await (await api.request('/v1/batch?metadata[job]=expiry-test&status=expired')).json()) as { data: { id: string }[] };
      expect(listed.data.map((b) => b.id)).toEqual([id]);
      // Still expired a little later: the stalled writes never move the counts of a final batch.
      await new Promise((r) => setTimeout(r, 1000));
      expect((await api.get(id)).request_counts).toEqual(done.request_counts);
    });
  });
}
