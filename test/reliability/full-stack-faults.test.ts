// The faults of issue 8 on Temporal + Parse + S3, with separate processes as in production: an API process
// (`batchmem serve`) and a worker process (`batchmem worker`) on a Temporal dev server, Parse records and sink on
// PostgreSQL, segments in S3. Each fault lands in the middle of a batch; afterwards the batch completes, its counts
// equal the Memory objects Parse holds, no memory is stored twice, and the webhook is accepted once with every
// attempt carrying the same webhook-id.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClasses } from '../../src/adapters/parse/schema.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { expectCounts, apiClient, type ApiClient, type BatchJson, ndjsonStream, memory } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import {
  printLogsOnFailure, startPostgres, startS3, startTemporal, stopAllBackends,
  type PostgresBackend, type S3Backend, type TemporalBackend,
} from '../support/containers.ts';
import { requireDocker } from '../support/docker.ts';
import { tempDir } from '../support/local-context.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';
import { expectNoSecrets, expectWebhookExactlyOnce, sleep, webhookSecretParts } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const root = join(import.meta.dirname, '..', '..');
const total = 4_000;

describe('faults on Temporal + Parse + S3, API and worker in separate processes', () => {
  const keys = testKeys();
  const dir = tempDir();
  const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
  let postgres: PostgresBackend;
  let s3: S3Backend;
  let temporal: TemporalBackend;
  let parse: ParseServerHandle;
  let receiver: WebhookReceiver;
  let env: Record<string, string>;
  let api: ServerProcess;
  let worker: ServerProcess;
  let client: ApiClient;
  const workers: ServerProcess[] = [];

  async function startWorker(identity: string): Promise<ServerProcess> {
    const started = await serverProcess({ ...env, BATCHMEM_WORKER_ID: identity }, 'worker');
    workers.push(started);
    await started.start();
    const deadline = Date.now() + 120_000;
    while (!started.output().includes('temporal worker is polling')) {
      if (Date.now() > deadline) throw new Error(`worker ${identity} did not start polling:\n${started.output().slice(-3000)}`);
      await sleep(100);
    }
    return started;
  }

  beforeAll(async () => {
    [postgres, s3, temporal, receiver] = await Promise.all([startPostgres(), startS3(), startTemporal(), webhookReceiver(webhookSecret)]);
    parse = await startParseServer({ databaseURI: postgres.url });
    env = {
      ...commonEnv(keys),
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_ORCHESTRATOR: 'temporal',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      TEMPORAL_TASK_QUEUE: uniqueId('faults'),
      BATCHMEM_STORE: 'parse',
      BATCHMEM_SINK: 'parse',
      PARSE_SERVER_URL: parse.serverURL,
      PARSE_APP_ID: parse.appId,
      PARSE_MASTER_KEY: parse.masterKey,
      BATCHMEM_PAYLOADS: 's3',
      BATCHMEM_S3_BUCKET: `faults-${randomUUID()}`,
      BATCHMEM_S3_ENDPOINT: s3.endpoint,
      BATCHMEM_S3_REGION: s3.region,
      BATCHMEM_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      // Small segments, a few at a time, so that each fault lands mid-batch.
      BATCHMEM_SEGMENT_MAX_ITEMS: '200',
      BATCHMEM_SEGMENT_CONCURRENCY: '2',
      BATCHMEM_WEBHOOK_TIMEOUT_MS: '1000',
      BATCHMEM_WEBHOOK_MAX_ATTEMPTS: '20',
    };
    await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PARSE_DATABASE_URI: postgres.url },
    });
    api = await serverProcess(env);
    await api.start();
    worker = await startWorker('worker-1');
    client = apiClient(api.url, keys[0]!.key);
  });
  afterAll(async () => {
    await Promise.allSettled([api?.stop(), ...workers.map((w) => w.stop())]);
    await receiver?.close();
    await parse?.stop();
    await stopAllBackends();
    dir.remove();
  });
  printLogsOnFailure(() => [postgres, s3, temporal]);

  /** Memory objects Parse holds for a batch, counted with the master key. */
  async function parseMemories(id: string): Promise<number> {
    const where = encodeURIComponent(JSON.stringify({ batchId: batchKey('org-a', id) }));
    const response = await fetch(`${parse.serverURL}/classes/${parseClasses.memory}?where=${where}&count=1&limit=0`, {
      headers: { 'X-Parse-Application-Id': parse.appId, 'X-Parse-Master-Key': parse.masterKey },
    });
    return ((await response.json()) as { count: number }).count;
  }

  async function submit(id: string): Promise<void> {
    const response = await client.submitNdjson(ndjsonStream(total, (i) => ({ ...memory(i), external_id: `${id}-${i}` })), `?batch_id=${id}&webhook_url=${encodeURIComponent(receiver.url)}`, {
      'webhook-secret': webhookSecret,
    });
    expect(response.status, await response.clone().text()).toBe(202);
  }

  const midBatch = (id: string) => client.waitFor(id, (b) => b.request_counts.processed >= 400 && b.request_counts.processed < total, 180_000);

  /** `at` is the batch as it stood when the fault began. */
  async function expectSurvived(id: string, fault: string, startedAt: number, at?: BatchJson): Promise<BatchJson> {
    const done = await client.waitForFinal(id, 300_000);
    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    expect(await parseMemories(id)).toBe(total);
    const results = await client.all<{ index: number; memory_id: string }>(`/v1/batch/${id}/results`);
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
    await receiver.waitFor(id, 120_000);
    await sleep(1_000);
    expectWebhookExactlyOnce(receiver, id);
    const when = at ? ` at ${at.request_counts.processed}/${total} processed` : '';
    console.info(`[full stack] ${fault}${when}: completed ${total}/${total}, ${total} Memory objects, webhook once; ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    return done;
  }

  it('survives SIGKILL of the worker process mid-batch, with a new worker taking over', async () => {
    const startedAt = Date.now();
    await submit('fs-worker-killed');
    const at = await midBatch('fs-worker-killed');
    await worker.kill();
    worker = await startWorker('worker-2');
    await expectSurvived('fs-worker-killed', 'worker SIGKILL', startedAt, at);
  });

  it('survives PostgreSQL (Parse records and sink) restarted mid-batch', async () => {
    const startedAt = Date.now();
    await submit('fs-postgres-restarted');
    const at = await midBatch('fs-postgres-restarted');
    await postgres.restart();
    await expectSurvived('fs-postgres-restarted', 'PostgreSQL restart', startedAt, at);
  });

  it('survives the S3 container stopped for 5 s and started again mid-batch', async () => {
    const startedAt = Date.now();
    await submit('fs-s3-stopped');
    const at = await midBatch('fs-s3-stopped');
    const container = (await requireDocker()).container.dockerode.getContainer(s3.container.getId());
    await container.stop({ t: 0 });
    await sleep(5_000);
    await container.start();
    await expectSurvived('fs-s3-stopped', 'S3 stopped 5 s', startedAt, at);
  });

  it('survives the Temporal dev server restarted mid-batch, its database file kept', async () => {
    const startedAt = Date.now();
    await submit('fs-temporal-restarted');
    const at = await midBatch('fs-temporal-restarted');
    await temporal.restart();
    await expectSurvived('fs-temporal-restarted', 'Temporal restart', startedAt, at);
  });

  it('delivers once through a receiver that answers 500, then hangs, then recovers', async () => {
    const startedAt = Date.now();
    const forBatch = () => receiver.deliveries.filter((d) => d.payload.data.id === 'fs-flaky-receiver');
    receiver.setMode('fail');
    await submit('fs-flaky-receiver');
    await expect.poll(() => forBatch().length, { timeout: 180_000 }).toBeGreaterThanOrEqual(3);
    receiver.setMode('hang');
    const hangsFrom = forBatch().length;
    await expect.poll(() => forBatch().length, { timeout: 60_000 }).toBeGreaterThanOrEqual(hangsFrom + 2);
    receiver.setMode('ok');
    const done = await expectSurvived('fs-flaky-receiver', 'webhook 500 then hang', startedAt);
    const answers = forBatch().map((d) => d.answeredWith);
    expect(answers.includes(500) && answers.includes('timeout') && answers.at(-1) === 204).toBe(true);
    await expect.poll(async () => (await client.get(done.id)).webhook.delivered, { timeout: 30_000 }).toBe(true);
  });

  it('keeps keys and webhook secrets out of every process output', () => {
    const secrets = [...keys.map((k) => k.key), ...webhookSecretParts(webhookSecret), parse.masterKey, s3.secretAccessKey];
    for (const process of [api, ...workers]) expectNoSecrets(process.output(), secrets);
  });
});
