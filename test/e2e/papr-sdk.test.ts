// The Papr SDK suite (./papr-sdk.suite.ts) on embedded defaults and on Parse records, payloads and sink. On Parse,
// the Memory class first loses its `attributes` field, so `batchmem migrate` must create it, as it would on a Parse
// Server set up by an earlier batchmem.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect } from 'vitest';
import { parseClasses } from '../../src/adapters/parse/schema.ts';
import { printLogsOnFailure, startPostgres, stopAllBackends, type PostgresBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';
import { paprSdkSuite } from './papr-sdk.suite.ts';

const root = join(import.meta.dirname, '..', '..');
let postgres: PostgresBackend | undefined;
let parse: ParseServerHandle | undefined;
afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [postgres]);

paprSdkSuite('embedded defaults', async () => {
  const dir = tempDir();
  return { env: { BATCHMEM_DATA_DIR: dir.path }, close: async () => dir.remove() };
});

paprSdkSuite('Parse records, payloads and sink', async () => {
  postgres = await startPostgres();
  parse = await startParseServer({ databaseURI: postgres.url });
  const server = parse;
  const env = {
    BATCHMEM_STORE: 'parse',
    BATCHMEM_PAYLOADS: 'parse',
    BATCHMEM_SINK: 'parse',
    PARSE_SERVER_URL: server.serverURL,
    PARSE_APP_ID: server.appId,
    PARSE_MASTER_KEY: server.masterKey,
  };
  // The schema as an earlier batchmem left it: no place for the Papr fields.
  const headers = { 'X-Parse-Application-Id': server.appId, 'X-Parse-Master-Key': server.masterKey, 'content-type': 'application/json' };
  const dropped = await fetch(`${server.serverURL}/schemas/${parseClasses.memory}`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({ className: parseClasses.memory, fields: { attributes: { __op: 'Delete' } } }),
  });
  expect(dropped.status, await dropped.text()).toBe(200);
  const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PARSE_DATABASE_URI: postgres.url },
  });
  expect(stdout).toContain(`fields attributes on ${parseClasses.memory}`);
  const schema = (await (await fetch(`${server.serverURL}/schemas/${parseClasses.memory}`, { headers })).json()) as { fields: Record<string, { type: string }> };
  expect(schema.fields.attributes).toEqual({ type: 'Object' });
  const dir = tempDir();
  return { env: { BATCHMEM_DATA_DIR: dir.path, ...env }, close: async () => dir.remove() };
});
