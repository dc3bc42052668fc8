// A Temporal worker (`batchmem worker`) with the HTTP sink stops within its shutdown grace when SIGTERM comes while
// the target keeps failing: its segment activities would otherwise wait out the sink's outage tolerance (10 minutes),
// ignoring their cancellation. The batch then completes from a new worker, each memory delivered once.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';
import { apiClient, ndjsonStream } from '../support/api-client.ts';
import { startTemporal, type TemporalBackend } from '../support/containers.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { expectEachMemoryOnce, refuseMarker } from '../support/http-sink.ts';
import { tempDir } from '../support/local-context.ts';
import { sleep } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { sinkReceiver, type SinkReceiver } from '../support/sink-receiver.ts';

describe('HTTP sink on a Temporal worker: SIGTERM while the target fails', () => {
  const keys = testKeys();
  const dir = tempDir();
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  let temporal: TemporalBackend;
  let receiver: SinkReceiver;
  let env: Record<string, string>;
  let api: ServerProcess;
  const workers: ServerProcess[] = [];

  async function startWorker(): Promise<ServerProcess> {
    const worker = await startWorkerProcess(env, `worker-stop-${workers.length + 1}`);
    workers.push(worker);
    return worker;
  }

  beforeAll(async () => {
    [temporal, receiver] = await Promise.all([startTemporal(), sinkReceiver({ secret, refuseMarker })]);
    env = {
      ...commonEnv(keys),
      BATCHMEM_FAULT_ITEM_MARKER: '',
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_ORCHESTRATOR: 'temporal',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      BATCHMEM_SINK: 'http',
      BATCHMEM_SINK_URL: `${receiver.url}/ingest`,
      BATCHMEM_SINK_FORMAT: 'ndjson',
      BATCHMEM_SINK_SECRET: secret,
      BATCHMEM_SINK_BREAKER_PAUSE: '1s',
      BATCHMEM_SEGMENT_MAX_ITEMS: '200',
    };
    api = await serverProcess(env);
    await api.start();
  });
  afterAll(async () => {
    for (const worker of workers) await worker.kill();
    await api?.stop();
    await receiver?.close();
    await temporal?.stop();
    dir.remove();
  });

  it('exits soon after the 30 s activity grace, and a new worker completes the batch', async () => {
    const client = apiClient(api.url, keys[0]!.key);
    const worker = await startWorker();
    receiver.setPlan(() => ({ kind: 'answer', status: 500 }));
    expect((await client.submitNdjson(ndjsonStream(600, (i) => ({ content: `w ${i}`, external_id: `w-${i}` })), '?batch_id=worker-stop')).status).toBe(202);
    const deadline = Date.now() + 60_000;
    while (receiver.arrivals.length === 0 && Date.now() < deadline) await sleep(100);
    expect(receiver.arrivals.length).toBeGreaterThan(0);
    const pid = worker.pid()!;
    const stoppingAt = Date.now();
    process.kill(pid, 'SIGTERM');
    while (worker.pid() !== undefined && Date.now() - stoppingAt < 50_000) await sleep(200);
    const stopMs = Date.now() - stoppingAt;
    console.info(`[http-sink] worker SIGTERM with the target failing: ${worker.pid() === undefined ? 'exited' : 'still running'} after ${(stopMs / 1000).toFixed(1)} s`);
    expect(worker.pid()).toBeUndefined();
    receiver.setPlan(undefined);
    await startWorker();
    const done = await client.waitForFinal('worker-stop', 120_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts.succeeded).toBe(600);
    expectEachMemoryOnce(receiver, 600);
  });
});
