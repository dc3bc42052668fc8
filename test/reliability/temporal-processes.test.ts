// Separate processes against one Temporal dev server and one storage folder, as they run in production: API processes
// (`batchmem serve`) and worker processes (`batchmem worker`). A worker killed with SIGKILL mid-batch is replaced
// and the batch completes exactly; two workers behind two API processes share one batch's segments.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { expectCounts, apiClient, type ApiClient, type BatchJson, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { storedMemories } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

let temporal: TemporalBackend;
beforeAll(async () => {
  temporal = await startTemporal();
});
afterAll(stopAllBackends);
printLogsOnFailure(() => [temporal]);

interface Cluster {
  dataDir: string;
  env: Record<string, string>;
  api(name: string): Promise<ServerProcess>;
  worker(identity: string): Promise<ServerProcess>;
  processes: ServerProcess[];
  close(): Promise<void>;
}

const keys = testKeys();

/** API and worker processes sharing a Temporal task queue and a data folder (SQLite records and sink, files). */
function cluster(extraEnv: Record<string, string>): Cluster {
  const dir = tempDir();
  const processes: ServerProcess[] = [];
  const env = {
    ...commonEnv(keys),
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace,
    TEMPORAL_TASK_QUEUE: uniqueId('cluster'),
    ...extraEnv,
  };
  return {
    dataDir: dir.path,
    env,
    processes,
    async api() {
      const api = await serverProcess(env);
      processes.push(api);
      await api.start();
      return api;
    },
    async worker(identity) {
      const worker = await startWorkerProcess(env, identity);
      processes.push(worker);
      return worker;
    },
    async close() {
      await Promise.allSettled(processes.map((p) => p.stop()));
      dir.remove();
    },
  };
}

async function segmentWorkers(dataDir: string, organization: string, id: string): Promise<Map<string, number>> {
  const repository = new SqliteBatchRepository(join(dataDir, 'batchmem.db'));
  try {
    const byWorker = new Map<string, number>();
    for (const segment of await repository.listSegments(batchKey(organization, id))) {
      byWorker.set(segment.workerId, (byWorker.get(segment.workerId) ?? 0) + 1);
    }
    return byWorker;
  } finally {
    await repository.close();
  }
}

async function expectEveryMemoryOnce(api: ApiClient, dataDir: string, batch: BatchJson, total: number): Promise<void> {
  expect(batch.status).toBe('completed');
  expectCounts(batch.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
  expect(storedMemories(dataDir, 'org-a', batch.id)).toEqual({ rows: total, distinctIndexes: total, distinctIds: total });
  const results = await api.all<{ index: number; memory_id: string; status: string }>(`/v1/batch/${batch.id}/results`);
  expect(results.length).toBe(total);
  expect(results.every((r, i) => r.index === i && r.status === 'succeeded')).toBe(true);
  expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
}

describe('a Temporal worker killed with SIGKILL in the middle of a batch', () => {
  let c: Cluster;
  afterEach(async () => c?.close());

  it('completes on a new worker with exact counts and one memory per item', async () => {
    // Segments of 200, two at a time: 100 segments, so the kill lands mid-batch.
    c = cluster({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '2' });
    const server = await c.api('api');
    const first = await c.worker('worker-before-kill');
    const api = apiClient(server.url, keys[0]!.key);
    const total = 20_000;
    expect((await api.submitNdjson(ndjsonStream(total), '?batch_id=killed-worker')).status).toBe(202);
    const before = await api.waitFor('killed-worker', (b) => b.request_counts.processed >= total / 5);
    await first.kill();
    const atKill = (await api.get('killed-worker')).request_counts.processed;
    expect(atKill).toBeLessThan(total);
    const killedAt = Date.now();
    await c.worker('worker-after-kill');
    const done = await api.waitForFinal('killed-worker');
    await expectEveryMemoryOnce(api, c.dataDir, done, total);
    const workers = await segmentWorkers(c.dataDir, 'org-a', 'killed-worker');
    expect([...workers.keys()].sort()).toEqual(['worker-after-kill', 'worker-before-kill']);
    expect([...workers.values()].reduce((a, b) => a + b, 0)).toBe(100);
    console.log(
      `[temporal] SIGKILL at ${atKill} of ${total} memories (seen ${before.request_counts.processed}); replacement worker finished ` +
        `${Math.round((Date.now() - killedAt) / 100) / 10} s after the kill; segments by worker: ${JSON.stringify(Object.fromEntries(workers))}`,
    );
  });
});

describe('two API processes and two worker processes on one Temporal server', () => {
  let c: Cluster;
  afterEach(async () => c?.close());

  it('shares one batch between both workers, with exact counts seen through either API', async () => {
    c = cluster({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '4' });
    const [apiOne, apiTwo] = await Promise.all([c.api('api-1'), c.api('api-2')]);
    await Promise.all([c.worker('worker-a'), c.worker('worker-b')]);
    const one = apiClient(apiOne.url, keys[0]!.key);
    const two = apiClient(apiTwo.url, keys[0]!.key);
    const total = 20_000;
    const startedAt = Date.now();
    expect((await one.submitNdjson(ndjsonStream(total), '?batch_id=shared')).status).toBe(202);
    expect((await two.submitNdjson(ndjsonStream(5000), '?batch_id=second-api')).status).toBe(202);
    // A repeated submission through the other API process maps to the same batch and workflow.
    const again = await two.submitNdjson(ndjsonStream(total), '?batch_id=shared');
    expect(again.status).toBe(200);
    const done = await two.waitForFinal('shared');
    const seconds = (Date.now() - startedAt) / 1000;
    await expectEveryMemoryOnce(one, c.dataDir, done, total);
    expect(done.workflow_id).toBe(`batch-${batchKey('org-a', 'shared')}`);
    await expectEveryMemoryOnce(two, c.dataDir, await one.waitForFinal('second-api'), 5000);
    const workers = await segmentWorkers(c.dataDir, 'org-a', 'shared');
    expect([...workers.keys()].sort()).toEqual(['worker-a', 'worker-b']);
    expect([...workers.values()].reduce((a, b) => a + b, 0)).toBe(100);
    console.log(`[temporal] ${total} memories across two workers in ${seconds.toFixed(1)} s; segments by worker: ${JSON.stringify(Object.fromEntries(workers))}`);
  });
});
