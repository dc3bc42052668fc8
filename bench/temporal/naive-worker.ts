// A worker process for the naive design (memories in the workflow input), optionally with Temporal External Storage
// on S3. Run by the benchmark as a child process, so that its peak RSS can be read from /proc.
import './protobufjs-dedupe.ts';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { SqliteMemorySink } from '../../src/adapters/local/memory-sink.ts';
import { createNaiveActivities } from './naive-activities.ts';
import { externalStorageFromEnv } from './external-storage.ts';

const env = process.env;
Runtime.install({ logger: new DefaultLogger('WARN') });
const sink = new SqliteMemorySink(join(env.BATCHMEM_DATA_DIR!, 'memories.db'));
const connection = await NativeConnection.connect({ address: env.TEMPORAL_ADDRESS! });
const externalStorage = externalStorageFromEnv(env);
const worker = await Worker.create({
  connection,
  namespace: env.TEMPORAL_NAMESPACE ?? 'default',
  taskQueue: env.TEMPORAL_TASK_QUEUE!,
  workflowsPath: fileURLToPath(new URL('./naive-workflows.ts', import.meta.url)),
  activities: createNaiveActivities(sink),
  ...(externalStorage ? { dataConverter: { externalStorage } } : {}),
  maxConcurrentActivityTaskExecutions: 8,
});
process.once('SIGTERM', () => worker.shutdown());
process.once('SIGINT', () => worker.shutdown());
console.log('naive worker is polling');
await worker.run();
await connection.close();
await sink.close();
