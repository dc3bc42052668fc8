// A Parse Server 9 for development: in this process, on the PostgreSQL at PARSE_DATABASE_URI, with its files in
// ./data/parse-files, the batchmem schema migrated. Prints the variables that point batchmem at it.
//   PARSE_DATABASE_URI=postgres://postgres@localhost:5432/parse node scripts/parse-dev-server.ts
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { startParseServer } from '../test/support/parse-server.ts';

const databaseURI = process.env.PARSE_DATABASE_URI;
if (!databaseURI) {
  process.stderr.write('set PARSE_DATABASE_URI, e.g. postgres://postgres@localhost:5432/parse\n');
  process.exit(2);
}
const filesDir = resolve(process.env.PARSE_DEV_FILES_DIR ?? 'data/parse-files');
mkdirSync(filesDir, { recursive: true });
const server = await startParseServer({
  databaseURI,
  filesDir,
  port: Number(process.env.PARSE_DEV_PORT ?? 1337),
  appId: process.env.PARSE_APP_ID ?? 'batchmem-dev',
  masterKey: process.env.PARSE_MASTER_KEY ?? 'batchmem-dev-master-key',
  organizations: ['default'],
});
for (const change of server.migration.changes) process.stdout.write(`parse: created ${change}\n`);
process.stdout.write(
  `Parse Server ready (files in ${filesDir}). Run batchmem against it with:\n` +
    `  export BATCHMEM_STORE=parse BATCHMEM_PAYLOADS=parse BATCHMEM_SINK=parse \\\n` +
    `    PARSE_SERVER_URL=${server.serverURL} PARSE_APP_ID=${server.appId} PARSE_MASTER_KEY=${server.masterKey}\n`,
);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
