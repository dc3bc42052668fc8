// Partial failure on the user's terms, through real server processes: tolerated failures (max_failed_percent) stop a
// batch whose memory store refuses too many items, on the in-process runner and on Temporal (an API process and a
// separate worker process on the Temporal dev server).
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { apiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { commonEnv, rejectMarker, testKeys } from '../e2e/http.suite.ts';

let temporal: TemporalBackend;
beforeAll(async () => {
  temporal = await startTemporal();
});
afterAll(stopAllBackends);
printLogsOnFailure(() => [temporal]);

const keys = testKeys();
const segmentItems = 500;
const concurrency = 4;

interface Stack {
  dataDir: string;
  url: string;
  close(): Promise<void>;
}

type Runner = 'local' | 'temporal';

/** An API process (and for Temporal a worker process) on one data folder; the memory store refuses marked items. */
async function stack(runner: Runner): Promise<Stack> {
  const dir = tempDir();
  const processes: ServerProcess[] = [];
  const env: Record<string, string> = {
    ...commonEnv(keys),
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_SEGMENT_MAX_ITEMS: String(segmentItems),
    BATCHMEM_SEGMENT_CONCURRENCY: String(concurrency),
  };
  if (runner === 'temporal') {
    Object.assign(env, {
      BATCHMEM_ORCHESTRATOR: 'temporal',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      TEMPORAL_TASK_QUEUE: uniqueId('partial'),
    });
  }
  const api = await serverProcess(env);
  processes.push(api);
  await api.start();
  if (runner === 'temporal') processes.push(await startWorkerProcess(env, 'partial-failure-worker'));
  return {
    dataDir: dir.path,
    url: api.url,
    async close() {
      await Promise.allSettled(processes.map((p) => p.stop()));
      dir.remove();
    },
  };
}

async function segmentsRecorded(dataDir: string, id: string): Promise<number> {
  const repository = new SqliteBatchRepository(join(dataDir, 'batchmem.db'));
  try {
    return (await repository.listSegments(batchKey('org-a', id))).length;
  } finally {
    await repository.close();
  }
}

describe.each<Runner>(['local', 'temporal'])('tolerated failures (%s runner)', (runner) => {
  let s: Stack | undefined;
  afterEach(async () => s?.close());

  it('a store refusing 5% of items with max_failed_percent 1 ends failed, attempting no more than the segments in flight at the limit', async () => {
    s = await stack(runner);
    const api = apiClient(s.url, keys[0]!.key);
    const total = 20_000;
    // Every 20th memory carries the marker the store refuses: 25 per segment of 500, 5% of the batch.
    const make = (i: number) => (i % 20 === 3 ? { ...memory(i, `tf-${runner}`), content: `${rejectMarker} ${i}` } : memory(i, `tf-${runner}`));
    const id = `tolerated-${runner}`;
    const submitted = await api.submitNdjson(ndjsonStream(total, (i) => ({ ...make(i), external_id: `${id}-${i}` })), `?batch_id=${id}&max_failed_percent=1`);
    expect(submitted.status).toBe(202);
    const done = await api.waitForFinal(id);
    expect(done.status).toBe('failed');
    // 1% of 20,000 is 200 failures; 25 per segment, so the 9th recorded segment passes it (225 > 200).
    const crossingSegment = Math.floor(200 / 25) + 1;
    expect(done.error).toMatch(/memories failed \(\d+(\.\d+)?% of 20000\), more than max_failed_percent 1; no new segment was started/);
    const segments = await segmentsRecorded(s.dataDir, id);
    // When the 9th was recorded at most `concurrency - 1` others were in flight; they finish and count, nothing starts after.
    expect(segments).toBeGreaterThanOrEqual(crossingSegment);
    expect(segments).toBeLessThanOrEqual(crossingSegment + concurrency - 1);
    expect(done.request_counts).toMatchObject({ total, processed: segments * segmentItems, failed: segments * 25, succeeded: segments * 475, expired: 0 });
    expect((done as unknown as { max_failed_percent: number | null }).max_failed_percent).toBe(1);
    console.log(`[tolerated ${runner}] failed after ${segments} of ${total / segmentItems} segments (limit passed at segment ${crossingSegment}, concurrency ${concurrency}): ${done.error}`);
  });
});
