// The end-to-end suite with BATCHMEM_ORCHESTRATOR=temporal: the API process starts workflows on the Temporal dev
// server container and a separate `batchmem worker` process runs them, both on the same SQLite/file storage.
import { tempDir } from '../support/local-context.ts';
import { startTemporal, type TemporalBackend } from '../support/containers.ts';
import type { ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { uniqueId } from '../support/batches.ts';
import { httpEndToEndSuite } from './http.suite.ts';

httpEndToEndSuite(
  'Temporal orchestrator with a separate worker process',
  async () => {
    const dir = tempDir();
    const temporal: TemporalBackend = await startTemporal();
    let worker: ServerProcess | undefined;
    const env = {
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_ORCHESTRATOR: 'temporal',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      TEMPORAL_TASK_QUEUE: uniqueId('e2e'),
    };
    return {
      env,
      async start(common) {
        worker = await startWorkerProcess(common, 'e2e-worker');
      },
      async close() {
        const output = worker?.output() ?? '';
        await worker?.stop();
        // A worker that died mid-suite leaves the batches waiting; its last words explain why.
        if (/"level":(50|60)/.test(output)) console.error(`[e2e] worker errors:\n${output.slice(-4000)}`);
        await temporal.stop();
        dir.remove();
      },
    };
  },
  { json: 10_000, ndjson: 100_000 },
);
