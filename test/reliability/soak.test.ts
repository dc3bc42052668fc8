// The long faults, run by `npm run test:soak` (BATCHMEM_SOAK=1), which also scales up the load and fuzz tests:
// a webhook receiver down for a full minute, the SQLite files locked for 40 seconds, and repeated crashes.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { apiClient, ndjsonStream } from '../support/api-client.ts';
import { serverErrorCounts } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { expectEveryMemoryOnce, expectNoSecrets, expectWebhookExactlyOnce, sleep, webhookSecretParts } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const soak = process.env.BATCHMEM_SOAK === '1';

describe.runIf(soak)('soak on embedded defaults', () => {
  let cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of cleanup.reverse()) await close();
    cleanup = [];
  });

  async function rig(env: Record<string, string>) {
    const keys = testKeys();
    const dir = tempDir();
    const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
    const receiver: WebhookReceiver = await webhookReceiver(webhookSecret);
    const server: ServerProcess = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, ...env });
    await server.start();
    cleanup.push(async () => {
      await server.stop();
      await receiver.close();
      dir.remove();
    });
    const secrets = [...keys.map((k) => k.key), ...webhookSecretParts(webhookSecret)];
    const submit = (id: string, total: number) =>
      apiClient(server.url, keys[0]!.key).submitNdjson(ndjsonStream(total), `?batch_id=${id}&webhook_url=${encodeURIComponent(receiver.url)}`, {
        'webhook-secret': webhookSecret,
      });
    return { server, receiver, api: apiClient(server.url, keys[0]!.key), dataDir: dir.path, secrets, submit };
  }

  it('delivers once after the receiver answers 500 for 30 s and hangs for 30 s more', async () => {
    const r = await rig({
      BATCHMEM_WEBHOOK_TIMEOUT_MS: '2000',
      BATCHMEM_WEBHOOK_BASE_DELAY_MS: '500',
      BATCHMEM_WEBHOOK_MAX_DELAY_MS: '5000',
      BATCHMEM_WEBHOOK_MAX_ATTEMPTS: '40',
    });
    r.receiver.setMode('fail');
    expect((await r.submit('receiver-down-a-minute', 5_000)).status).toBe(202);
    await sleep(30_000);
    r.receiver.setMode('hang');
    await sleep(30_000);
    const during = await r.api.get('receiver-down-a-minute');
    expect(during.webhook.delivered).toBe(false);
    expect(during.webhook.attempts).toBeGreaterThanOrEqual(8);
    r.receiver.setMode('ok');
    await r.receiver.waitFor('receiver-down-a-minute', 30_000);
    await sleep(5_000);
    const deliveries = expectWebhookExactlyOnce(r.receiver, 'receiver-down-a-minute');
    expect(deliveries.some((d) => d.answeredWith === 500) && deliveries.some((d) => d.answeredWith === 'timeout')).toBe(true);
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', await r.api.get('receiver-down-a-minute'), 5_000);
    expectNoSecrets(r.server.output(), r.secrets);
    expect(await serverErrorCounts(r.server.url)).toEqual({});
  });

  it('completes a batch while both SQLite files are locked for 40 s', async () => {
    const r = await rig({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '2' });
    const total = 40_000;
    expect((await r.submit('locked-40s', total)).status).toBe(202);
    await r.api.waitFor('locked-40s', (b) => b.request_counts.processed >= 2_000);
    const locks = ['batchmem.db', 'memories.db'].map((file) => {
      const db = new DatabaseSync(join(r.dataDir, file));
      db.exec('PRAGMA busy_timeout = 10000');
      db.exec('BEGIN EXCLUSIVE');
      return db;
    });
    await sleep(40_000);
    for (const db of locks) {
      db.exec('ROLLBACK');
      db.close();
    }
    const done = await r.api.waitForFinal('locked-40s');
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, total);
    await r.receiver.waitFor('locked-40s');
    await sleep(2_000);
    expectWebhookExactlyOnce(r.receiver, 'locked-40s');
    expectNoSecrets(r.server.output(), r.secrets);
  });

  it('completes a 200,000-memory batch through ten SIGKILLs spread over its progress', async () => {
    const r = await rig({ BATCHMEM_SEGMENT_MAX_ITEMS: '500' });
    const total = 200_000;
    expect((await r.submit('killed-ten-times', total)).status).toBe(202);
    // Kill at progress marks rather than at times, so the number of kills does not depend on the machine's speed;
    // a random offset inside each step lands the kill at a different moment of a segment's work each time.
    let kills = 0;
    for (let step = 1; step <= 10; step += 1) {
      const mark = Math.floor(((step - 1 + Math.random()) / 10.5) * total);
      const isFinal = (status: string) => ['completed', 'failed', 'cancelled'].includes(status);
      const batch = await r.api.waitFor('killed-ten-times', (b) => b.request_counts.processed >= mark || isFinal(b.status), 300_000);
      if (isFinal(batch.status)) break;
      await r.server.kill();
      await r.server.start();
      kills += 1;
    }
    expect(kills).toBeGreaterThanOrEqual(8);
    const done = await r.api.waitForFinal('killed-ten-times', 600_000);
    await expectEveryMemoryOnce(r.api, r.dataDir, 'org-a', done, total);
    await r.receiver.waitFor('killed-ten-times');
    await sleep(2_000);
    expectWebhookExactlyOnce(r.receiver, 'killed-ten-times');
    expectNoSecrets(r.server.output(), r.secrets);
    console.log(`[soak] ${kills} kills during a ${total}-memory batch: completed, 0 lost, 0 duplicated`);
  });
});
