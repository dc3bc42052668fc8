// The port contracts against the embedded defaults: SQLite records and sink, file payloads, in-process runner.
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { workflowIdFor } from '../../src/domain/batch.ts';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { SqliteMemorySink } from '../../src/adapters/local/memory-sink.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';
import { FilePayloadStore } from '../../src/adapters/local/payload-store.ts';
import { batchRepositoryContract } from './batch-repository.contract.ts';
import { memorySinkContract } from './memory-sink.contract.ts';
import { orchestratorContract } from './orchestrator.contract.ts';
import { payloadStoreContract } from './payload-store.contract.ts';
import { localContext, tempDir } from '../support/local-context.ts';

batchRepositoryContract('sqlite', async () => {
  const dir = tempDir();
  const repository = new SqliteBatchRepository(join(dir.path, 'batchmem.db'));
  return { repository, close: async () => { await repository.close(); dir.remove(); } };
});

payloadStoreContract('files', async () => {
  const dir = tempDir();
  const root = join(dir.path, 'payloads');
  return {
    store: new FilePayloadStore(root),
    async corrupt(key) {
      const bytes = await readFile(join(root, key));
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(join(root, key), bytes);
    },
    close: async () => dir.remove(),
  };
});

memorySinkContract('sqlite', async () => {
  const dir = tempDir();
  const sink = new SqliteMemorySink(join(dir.path, 'memories.db'));
  return { sink, close: async () => { await sink.close(); dir.remove(); } };
});

// Two connections to one file, as an API and a worker process have: the unique index and the IMMEDIATE transaction
// keep one memory per external id between them.
memorySinkContract('sqlite, two connections', async () => {
  const dir = tempDir();
  const path = join(dir.path, 'memories.db');
  const one = new SqliteMemorySink(path);
  const two = new SqliteMemorySink(path);
  let turn = 0;
  const sink: MemorySink = {
    writeSegment: (records) => ((turn += 1) % 2 === 0 ? one : two).writeSegment(records),
    listByBatch: (key, after, limit) => one.listByBatch(key, after, limit),
    countOutcomes: (key) => one.countOutcomes(key),
    prepare: () => one.prepare(),
    check: () => one.check(),
    close: async () => { await one.close(); await two.close(); },
  };
  return { sink, close: async () => { await sink.close(); dir.remove(); } };
});

orchestratorContract('local', async () => {
  const local = localContext({ segmentMaxItems: 10, segmentConcurrency: 2 });
  await local.orchestrator.resume();
  // The embedded runner keeps no record of runs beyond the batch itself: a stored batch is one run, under its workflow id.
  const describe = async (batchKey: string) => ((await local.services.batches.get(batchKey)) ? { workflowId: workflowIdFor(batchKey) } : undefined);
  return { services: local.services, describe, close: local.close };
});
