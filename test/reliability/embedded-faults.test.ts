// Faults on embedded defaults (SQLite, files, in-process runner), each against the real server process: a crash
// mid-batch and mid-delivery, the SQLite databases locked for a while, a webhook receiver that fails and hangs.
// After each, the batch completes with exact counts, every memory is stored once, the webhook arrives once as a
// logical event, and no secret reaches the output.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { payloadFileCount, serverErrorCounts, storedMemories } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { expectEveryMemoryOnce, expectNoSecrets, expectWebhookExactlyOnce, sleep, webhookSecretParts } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

interface Rig {
  server: ServerProcess;
  receiver: WebhookReceiver;
  api: ApiClient;
  dataDir: string;
  secrets: string[];
  webhookSecret: string;
  close(): Promise<void>;
}

async function rig(env: Record<string, string> = {}): Promise<Rig> {
  const keys = testKeys();
  const dir = tempDir();
  const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
  const receiver = await webhookReceiver(webhookSecret);
  const server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, ...env });
  await server.start();
  return {
    server,
    receiver,
    api: apiClient(server.url, keys[0]!.key),
    dataDir: dir.path,
    secrets: [...keys.map((k) => k.key), ...webhookSecretParts(webhookSecret)],
    webhookSecret,
    async close() {
      await server.stop();
      await receiver.close();
      dir.remove();
    },
  };
}

async function expectCleanOutput(r: Rig): Promise<void> {
  expectNoSecrets(r.server.output(), r.secrets);
  expectNoSecrets(await (await fetch(`${r.server.url}/metrics`)).text(), r.secrets);
  expect(await serverErrorCounts(r.server.url)).toEqual({});
}

describe('embedded defaults: SIGKILL of the process that runs segments', () => {
  let r: Rig;
  beforeAll(async () => {
    // Small segments, one at a time, so that each kill lands mid-batch.
    r = await rig({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '1' });
  });
  afterAll(async () => r?.close());

  it('completes after three kills mid-batch, each memory stored once and the webhook delivered once', async () => {
    const total = 30_000;
    const response = await r.api.submitNdjson(ndjsonStream(total), `?batch_id=killed-thrice&webhook_url=${encodeURIComponent(r.receiver.url)}`, {
      'webhook-secret': r.webhookSecret,
    });
    expect(response.status).toBe(202);
    for (const fraction of [0.1, 0.4, 0.7]) {
      const seen = await r.api.waitFor('killed-thrice', (b) => b.request_counts.processed >= total * fraction);
      expect(seen.request_counts.processed).toBeLessThan(total);
      await r.server.kill();
      await r.server.start();
    }
    const done = await r.api.waitForFinal('killed-thrice');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, total);
    // Every external id was new: a segment run again after a kill is counted with its first write's outcome
    // (created), not as unchanged by its own earlier write.
    expect(done.request_counts).toMatchObject({ created: total, updated: 0, unchanged: 0 });
    await r.receiver.waitFor('killed-thrice');
    await sleep(1_000); // a second delivery, were there one, would come within the backoff
    expectWebhookExactlyOnce(r.receiver, 'killed-thrice');
    expect(r.server.output().match(/resumed unfinished batches/g)?.length).toBe(3);
    await expectCleanOutput(r);
  });

  it('redelivers with the same webhook-id when killed while a delivery hangs, and is accepted once', async () => {
    r.receiver.setMode('hang');
    const response = await r.api.submitJson({
      memories: Array.from({ length: 500 }, (_, i) => ({ content: `memory ${i}` })),
      batch_id: 'killed-mid-delivery',
      webhook_url: r.receiver.url,
      webhook_secret: r.webhookSecret,
    });
    expect(response.status).toBe(202);
    await expect.poll(() => r.receiver.deliveries.filter((d) => d.payload.data.id === 'killed-mid-delivery').length, { timeout: 60_000 }).toBeGreaterThan(0);
    await r.server.kill();
    r.receiver.setMode('ok');
    await r.server.start();
    await r.receiver.waitFor('killed-mid-delivery');
    await sleep(1_000);
    const deliveries = expectWebhookExactlyOnce(r.receiver, 'killed-mid-delivery');
    expect(deliveries.length).toBeGreaterThanOrEqual(2);
    const done = await r.api.get('killed-mid-delivery');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, 500);
    await expect.poll(async () => (await r.api.get('killed-mid-delivery')).webhook).toMatchObject({ delivered: true, last_error: null });
    await expectCleanOutput(r);
  });
});

describe('embedded defaults: the SQLite databases locked for 15 seconds', () => {
  let r: Rig;
  const held: DatabaseSync[] = [];
  beforeAll(async () => {
    r = await rig({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '2' });
  });
  afterEach(() => {
    for (const db of held.splice(0)) if (db.isOpen) db.close();
  });
  afterAll(async () => r?.close());

  /** Takes the write lock of a database file from this process, as another program holding it would. */
  function lock(file: string): DatabaseSync {
    const db = new DatabaseSync(join(r.dataDir, file));
    held.push(db);
    db.exec('PRAGMA busy_timeout = 10000');
    db.exec('BEGIN EXCLUSIVE');
    return db;
  }

  it('completes a batch whose segments ran into the lock, with exact counts and one webhook', async () => {
    const total = 20_000;
    const response = await r.api.submitNdjson(ndjsonStream(total), `?batch_id=locked-out&webhook_url=${encodeURIComponent(r.receiver.url)}`, {
      'webhook-secret': r.webhookSecret,
    });
    expect(response.status).toBe(202);
    await r.api.waitFor('locked-out', (b) => b.request_counts.processed >= 2_000);
    const outputBefore = r.server.output().length;
    const locks = [lock('batchmem.db'), lock('memories.db')];
    // node:sqlite waits for a lock synchronously (busy_timeout, 10 s), so the API stalls while it waits: the test
    // leaves it alone until the lock is gone.
    await sleep(15_000);
    const stalled = storedMemories(r.dataDir, 'org-a', 'locked-out');
    for (const db of locks) {
      db.exec('ROLLBACK');
      db.close();
    }
    expect(stalled.rows).toBeLessThan(total);
    const done = await r.api.waitForFinal('locked-out');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, total);
    // The lock did bite: segment attempts failed on it and were retried.
    expect(r.server.output().slice(outputBefore)).toMatch(/segment attempt failed; retrying/);
    await r.receiver.waitFor('locked-out');
    await sleep(1_000);
    expectWebhookExactlyOnce(r.receiver, 'locked-out');
    await expectCleanOutput(r);
  });

  it('leaves no segment behind when a submission cannot be recorded, and takes it again afterwards', async () => {
    const filesBefore = payloadFileCount(r.dataDir);
    const db = lock('batchmem.db');
    const body = { memories: Array.from({ length: 3000 }, (_, i) => ({ content: `memory ${i}` })), batch_id: 'submitted-into-a-lock' };
    const refused = await r.api.submitJson(body);
    db.exec('ROLLBACK');
    db.close();
    // The store could not record the batch: a passing outage, answered 503 with Retry-After, as problem+json.
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(payloadFileCount(r.dataDir)).toBe(filesBefore);
    const accepted = await r.api.submitJson(body);
    expect(accepted.status).toBe(202);
    const done = await r.api.waitForFinal('submitted-into-a-lock');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, 3000);
    expectNoSecrets(r.server.output(), r.secrets);
  });
});

describe('embedded defaults: a webhook receiver that answers 500, then hangs, then recovers', () => {
  let r: Rig;
  beforeAll(async () => {
    r = await rig({
      BATCHMEM_WEBHOOK_TIMEOUT_MS: '500',
      BATCHMEM_WEBHOOK_BASE_DELAY_MS: '200',
      BATCHMEM_WEBHOOK_MAX_DELAY_MS: '1000',
      BATCHMEM_WEBHOOK_MAX_ATTEMPTS: '12',
    });
  });
  afterAll(async () => r?.close());

  it('delivers the event exactly once, every attempt carrying the same webhook-id', async () => {
    r.receiver.setMode('fail');
    const forBatch = () => r.receiver.deliveries.filter((d) => d.payload.data.id === 'flaky-receiver');
    const response = await r.api.submitJson({
      memories: Array.from({ length: 1000 }, (_, i) => ({ content: `memory ${i}`, external_id: `e${i}` })),
      batch_id: 'flaky-receiver',
      webhook_url: r.receiver.url,
      webhook_secret: r.webhookSecret,
    });
    expect(response.status).toBe(202);
    await expect.poll(() => forBatch().length, { timeout: 60_000 }).toBeGreaterThanOrEqual(3);
    r.receiver.setMode('hang');
    const hangsFrom = forBatch().length;
    await expect.poll(() => forBatch().length, { timeout: 60_000 }).toBeGreaterThanOrEqual(hangsFrom + 2);
    const failing = await r.api.get('flaky-receiver');
    expect(failing.status).toBe('completed');
    expect(failing.webhook.delivered).toBe(false);
    expect(failing.webhook.last_error).toMatch(/500|timed out/);
    r.receiver.setMode('ok');
    await r.receiver.waitFor('flaky-receiver');
    await sleep(2_000);
    const deliveries = expectWebhookExactlyOnce(r.receiver, 'flaky-receiver');
    expect(deliveries.map((d) => d.answeredWith)).toEqual([
      ...deliveries.filter((d) => d.answeredWith === 500).map(() => 500),
      ...deliveries.filter((d) => d.answeredWith === 'timeout').map(() => 'timeout'),
      204,
    ]);
    const done = await r.api.get('flaky-receiver');
    expect(done.webhook).toEqual({ url: r.receiver.url, delivered: true, attempts: deliveries.length, last_error: null });
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, 1000);
    await expectCleanOutput(r);
  });
});

describe('embedded defaults: the processing thread dies with an uncaught error', () => {
  const marker = 'crash-the-processing-thread';
  let r: Rig;
  beforeAll(async () => {
    r = await rig({ BATCHMEM_FAULT_CRASH_MARKER: marker, BATCHMEM_SEGMENT_MAX_ITEMS: '500' });
  });
  afterAll(async () => r?.close());

  it('starts the thread again, which resumes the batch: each memory stored once, the webhook once, the API up throughout', async () => {
    const total = 5000;
    const make = (i: number) => (i === 2600 ? { ...memory(i), content: `${memory(i).content} ${marker}` } : memory(i));
    const response = await r.api.submitNdjson(ndjsonStream(total, make), `?batch_id=thread-crash&webhook_url=${encodeURIComponent(r.receiver.url)}`, {
      'webhook-secret': r.webhookSecret,
    });
    expect(response.status).toBe(202);
    // The API thread answers while the processing thread is down and being started again.
    const seen: string[] = [];
    for (let polls = 0; polls < 600; polls += 1) {
      const status = await fetch(`${r.server.url}/readyz`);
      seen.push(String(status.status));
      const batch = await r.api.get('thread-crash');
      if (batch.status === 'completed') break;
      await sleep(50);
    }
    const done = await r.api.waitForFinal('thread-crash');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, total);
    await r.receiver.waitFor('thread-crash');
    await sleep(1_000);
    expectWebhookExactlyOnce(r.receiver, 'thread-crash');
    const output = r.server.output();
    expect(output).toContain('injected fault: the processing thread crashed');
    expect(output.match(/the processing thread stopped; starting it again/g)?.length).toBe(1);
    expect(seen).toContain('200');
    // What the thread reported reached the API's metrics: one segment duration per segment at least.
    const metrics = await (await fetch(`${r.server.url}/metrics`)).text();
    const segments = Number(/^batchmem_segment_duration_seconds_count (\d+)/m.exec(metrics)?.[1]);
    expect(segments).toBeGreaterThanOrEqual(total / 500);
    expectNoSecrets(output, r.secrets);
  });
});
