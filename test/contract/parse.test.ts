// The port contracts against the Parse adapters, on Parse Server 9 in-process over the PostgreSQL container.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { ParseBatchRepository } from '../../src/adapters/parse/batch-repository.ts';
import { connectParse, type ParseConnection } from '../../src/adapters/parse/connection.ts';
import { ParseMemorySink } from '../../src/adapters/parse/memory-sink.ts';
import { ParsePayloadStore } from '../../src/adapters/parse/payload-store.ts';
import { batchRepositoryContract } from './batch-repository.contract.ts';
import { memorySinkContract } from './memory-sink.contract.ts';
import { payloadStoreContract } from './payload-store.contract.ts';
import { printLogsOnFailure, startPostgres, stopAllBackends, type PostgresBackend } from '../support/containers.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';

let postgres: PostgresBackend;
let parse: ParseServerHandle;
let connection: ParseConnection;

beforeAll(async () => {
  postgres = await startPostgres();
  parse = await startParseServer({ databaseURI: postgres.url });
  connection = connectParse(parse);
});
afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [postgres]);

batchRepositoryContract('parse', async () => ({ repository: new ParseBatchRepository(connection), close: async () => {} }));

payloadStoreContract('parse files', async () => {
  const store = new ParsePayloadStore(connection);
  return {
    store,
    async corrupt(key) {
      const name = await store.fileName(key);
      if (!name) throw new Error(`no Parse file for ${key}`);
      const path = join(parse.filesDir, encodeURIComponent(name));
      const bytes = await readFile(path);
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(path, bytes);
    },
    close: async () => {},
  };
});

memorySinkContract('parse', async () => ({ sink: new ParseMemorySink(connection), close: async () => {} }));
