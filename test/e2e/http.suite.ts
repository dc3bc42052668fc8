// The end-to-end suite over HTTP against a real server process. Each backend combination runs it unchanged:
// the embedded defaults here, Parse/S3/Temporal in their own files.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, apiClient, type ApiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { gate, heldBody, type StreamedBatch, waitForStreamed } from '../support/streamed-upload.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

export interface E2eBackend {
  /** Environment naming the backends (BATCHMEM_STORE, ...) and how to reach them. */
  env: Record<string, string>;
  /** Extra processes the backend needs running beside the API (a Temporal worker, say). */
  start?(commonEnv: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export interface E2eSizes {
  json: number;
  ndjson: number;
}

export const rejectMarker = '__batchmem_reject__';

export function testKeys() {
  return [
    { key: `key-a-${randomBytes(16).toString('hex')}`, organization: 'org-a', namespace: 'ns', user: 'user-a', workspace: 'ws' },
    { key: `key-b-${randomBytes(16).toString('hex')}`, organization: 'org-b', namespace: 'ns', user: 'user-b', workspace: 'ws' },
  ];
}

export function commonEnv(keys: ReturnType<typeof testKeys>): Record<string, string> {
  return {
    BATCHMEM_API_KEYS: JSON.stringify(keys),
    // The test's webhook receiver listens on loopback.
    BATCHMEM_ALLOW_PRIVATE_WEBHOOKS: 'true',
    BATCHMEM_WEBHOOK_BASE_DELAY_MS: '100',
    BATCHMEM_WEBHOOK_MAX_DELAY_MS: '2000',
    BATCHMEM_WATCH_INTERVAL_MS: '100',
    BATCHMEM_FAULT_ITEM_MARKER: rejectMarker,
  };
}

export function httpEndToEndSuite(name: string, openBackend: () => Promise<E2eBackend>, sizes: E2eSizes): void {
  describe(`HTTP end to end: ${name}`, () => {
    const keys = testKeys();
    const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
    let backend: E2eBackend;
    let server: ServerProcess;
    let receiver: WebhookReceiver;
    let a: ApiClient;
    let b: ApiClient;

    beforeAll(async () => {
      backend = await openBackend();
      receiver = await webhookReceiver(webhookSecret);
      const env = { ...commonEnv(keys), ...backend.env };
      await backend.start?.(env);
      server = await serverProcess(env);
      await server.start();
      a = apiClient(server.url, keys[0]!.key);
      b = apiClient(server.url, keys[1]!.key);
    });
    afterAll(async () => {
      await server?.stop();
      await receiver?.close();
      await backend?.close();
    });

    it(`completes ${sizes.json} memories sent as JSON, with a memory id per item and a signed webhook`, async () => {
      const memories = Array.from({ length: sizes.json }, (_, i) => memory(i));
      const response = await a.submitJson({ memories, webhook_url: receiver.url, webhook_secret: webhookSecret });
      expect(response.status).toBe(202);
      const submitted = (await response.json()) as { id: string; webhook_secret?: string };
      expect(submitted.webhook_secret).toBeUndefined();
      const done = await a.waitForFinal(submitted.id);
      expect(done.status).toBe('completed');
      expectCounts(done.request_counts, { total: sizes.json, processed: sizes.json, succeeded: sizes.json, failed: 0, expired: 0 });
      const results = await a.all<{ index: number; status: string; memory_id?: string; external_id: string }>(`/v1/batch/${submitted.id}/results`);
      expect(results).toHaveLength(sizes.json);
      expect(results.every((r, i) => r.index === i && r.status === 'succeeded' && r.memory_id && r.external_id === `ext-${i}`)).toBe(true);
      expect(new Set(results.map((r) => r.memory_id)).size).toBe(sizes.json);
      const delivery = await receiver.waitFor(submitted.id);
      expect(delivery.verified).toBe(true);
      expect(delivery.payload.type).toBe('batch.completed');
      expect(delivery.payload.data.request_counts.succeeded).toBe(sizes.json);
      // The receiver sees the delivery before the sender records it: wait for the record.
      const recorded = await a.waitFor(submitted.id, (batch) => batch.webhook.delivered, 30_000);
      expect(recorded.webhook).toMatchObject({ delivered: true, last_error: null });
    });

    it(`completes ${sizes.ndjson} memories streamed as NDJSON`, async () => {
      const response = await a.submitNdjson(ndjsonStream(sizes.ndjson), '?batch_id=ndjson-big');
      expect(response.status).toBe(202);
      const done = await a.waitForFinal('ndjson-big', 600_000);
      expect(done.status).toBe('completed');
      expectCounts(done.request_counts, { total: sizes.ndjson, processed: sizes.ndjson, succeeded: sizes.ndjson, failed: 0, expired: 0 });
      expect(done.payload.compression_ratio).toBeGreaterThan(1.5);
      const results = await a.all<{ index: number; memory_id?: string }>(`/v1/batch/ndjson-big/results`);
      expect(results.length).toBe(sizes.ndjson);
      expect(new Set(results.map((r) => r.memory_id)).size).toBe(sizes.ndjson);
    });

    it('completes a batch with failed items, listing each failure by index', async () => {
      const memories = Array.from({ length: 500 }, (_, i) => memory(i, i % 50 === 7 ? rejectMarker : 'memory'));
      const response = await a.submitJson({ memories });
      const { id } = (await response.json()) as { id: string };
      const done = await a.waitForFinal(id);
      expect(done.status).toBe('completed');
      expectCounts(done.request_counts, { total: 500, processed: 500, succeeded: 490, failed: 10, expired: 0 });
      const errors = await a.all<{ index: number }>(`/v1/batch/${id}/errors`, 3);
      expect(errors.map((e) => e.index)).toEqual(Array.from({ length: 10 }, (_, i) => i * 50 + 7));
      const results = await a.all<{ index: number; status: string }>(`/v1/batch/${id}/results`, 77);
      expect(results.map((r) => r.index)).toEqual(Array.from({ length: 500 }, (_, i) => i));
      expect(results.filter((r) => r.status === 'failed')).toHaveLength(10);
    });

    it('with invalid_items record, processes while the upload streams and fails the invalid lines by line number', async () => {
      const count = 12_000;
      const badLines = [5, 3_001, 6_500, 9_999, 12_000];
      const line = (i: number) => (badLines.includes(i + 1) ? JSON.stringify({ content: '', external_id: `streamed-${i}` }) : JSON.stringify(memory(i, 'streamed')));
      const { opened, open } = gate();
      const submitted = a.submitNdjson(heldBody(count, line, 4_000, opened), '?batch_id=streamed-record&invalid_items=record');
      submitted.catch(() => undefined); // awaited below
      let during: StreamedBatch;
      try {
        during = await waitForStreamed(a, 'streamed-record', (batch) => batch.request_counts.processed > 0, 60_000);
      } finally {
        open();
      }
      expect(during).toMatchObject({ status: 'processing', invalid_items: 'record', upload: { complete: false } });
      expect(during.request_counts.total).toBe(during.upload.received);
      expect(during.upload.received).toBeLessThanOrEqual(4_000);
      const response = await submitted;
      expect(response.status, await response.clone().text()).toBe(202);
      const done = (await a.waitForFinal('streamed-record', 120_000)) as StreamedBatch;
      expect(done.status).toBe('completed');
      expect(done.upload).toEqual({ complete: true, received: count });
      expectCounts(done.request_counts, { total: count, processed: count, succeeded: count - badLines.length, failed: badLines.length, expired: 0 });
      const errors = await a.all<{ index: number; external_id: string | null; error: string }>('/v1/batch/streamed-record/errors');
      expect(errors.map((e) => [e.index, e.external_id])).toEqual(badLines.map((n) => [n - 1, `streamed-${n - 1}`]));
      expect(errors.every((e, k) => e.error.startsWith(`line ${badLines[k]} is invalid: `) && e.error.includes('content'))).toBe(true);
    });

    it('follows progress over Server-Sent Events until a final done event', async () => {
      const response = await a.submitNdjson(ndjsonStream(5000), '?batch_id=watched');
      expect(response.status).toBe(202);
      const { names, last } = await a.events('watched');
      expect(names.at(-1)).toBe('done');
      expect(names.slice(0, -1).every((n) => n === 'progress')).toBe(true);
      expect(last?.status).toBe('completed');
      expect(last?.request_counts.processed).toBe(5000);
    });

    it('returns the existing batch for a repeated batch_id or Idempotency-Key, never a second one', async () => {
      const first = await a.submitJson({ memories: [memory(1)], batch_id: 'repeat-me' });
      expect(first.status).toBe(202);
      const again = await a.submitJson({ memories: [memory(1), memory(2)], batch_id: 'repeat-me' });
      expect(again.status).toBe(200);
      expect(((await again.json()) as { request_counts: { total: number } }).request_counts.total).toBe(1);
      const keyed = await a.submitJson({ memories: [memory(3)] }, { 'idempotency-key': 'order-42' });
      const keyedAgain = await a.submitJson({ memories: [memory(3)] }, { 'idempotency-key': 'order-42' });
      expect(keyed.status).toBe(202);
      expect(keyedAgain.status).toBe(200);
      expect(((await keyed.json()) as { id: string }).id).toBe(((await keyedAgain.json()) as { id: string }).id);
      // The same batch_id in another organization is another batch.
      expect((await b.submitJson({ memories: [memory(1)], batch_id: 'repeat-me' })).status).toBe(202);
    });

    it('compares a repeat under an Idempotency-Key with a streamed (record) batch: same request answered, another body refused', async () => {
      const key = { 'idempotency-key': 'streamed-order-7' };
      const first = await a.submitNdjson(ndjsonStream(3000), '?invalid_items=record', key);
      expect(first.status).toBe(202);
      const { id } = (await first.json()) as { id: string };
      expect((await a.waitForFinal(id)).status).toBe('completed');
      const same = await a.submitNdjson(ndjsonStream(3000), '?invalid_items=record', key);
      expect(same.status).toBe(200);
      expect(same.headers.get('idempotent-replayed')).toBe('true');
      expect(((await same.json()) as { id: string }).id).toBe(id);
      const other = await a.submitNdjson(ndjsonStream(3001), '?invalid_items=record', key);
      // 422, as for a JSON body: the IETF Idempotency-Key draft's answer to a key reused with another payload.
      expect(other.status).toBe(422);
      expect(other.headers.get('content-type')).toContain('application/problem+json');
      expect(await other.text()).toContain('Idempotency-Key');
      // Nothing of either repeat was added to the batch.
      expect((await a.get(id)).request_counts.total).toBe(3000);
    });

    it('cancels a running batch, keeping counts equal to the memories stored', async () => {
      const response = await a.submitNdjson(ndjsonStream(40_000), '?batch_id=to-cancel');
      expect(response.status).toBe(202);
      const cancel = await a.request('/v1/batch/to-cancel/cancel', { method: 'POST' });
      expect(cancel.status).toBe(202);
      const done = await a.waitForFinal('to-cancel');
      expect(done.status).toBe('cancelled');
      expect(done.request_counts.processed).toBeLessThan(40_000);
      const results = await a.all<{ index: number }>(`/v1/batch/to-cancel/results`);
      expect(results.length).toBe(done.request_counts.succeeded);
      const again = await a.request('/v1/batch/to-cancel/cancel', { method: 'POST' });
      expect(again.status).toBe(409);
    });

    it('hides every batch of one tenant from another', async () => {
      const response = await a.submitJson({ memories: [memory(1)], batch_id: 'private-to-a' });
      expect(response.status).toBe(202);
      for (const path of ['', '/results', '/errors', '/events']) {
        const other = await b.request(`/v1/batch/private-to-a${path}`);
        expect(other.status).toBe(404);
        expect(other.headers.get('content-type')).toContain('application/problem+json');
      }
      expect((await b.request('/v1/batch/private-to-a/cancel', { method: 'POST' })).status).toBe(404);
      const listed = await b.all<{ id: string }>('/v1/batch');
      expect(listed.map((x) => x.id)).not.toContain('private-to-a');
      expect((await a.all<{ id: string }>('/v1/batch')).map((x) => x.id)).toContain('private-to-a');
    });

    it('never writes an API key or a webhook secret to its output', async () => {
      const output = server.output();
      expect(output.length).toBeGreaterThan(0);
      for (const secret of [...keys.map((k) => k.key), webhookSecret, webhookSecret.slice('whsec_'.length)]) {
        expect(output).not.toContain(secret);
      }
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toContain('batchmem_batches_total');
      for (const secret of [...keys.map((k) => k.key), webhookSecret]) expect(metrics).not.toContain(secret);
    });
  });
}
