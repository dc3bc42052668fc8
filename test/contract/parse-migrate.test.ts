// `migrateParse` creates the Parse schema once, changes nothing the second time, and finds (and, with a unique-index
// maker, repairs) a unique index that went missing.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectParse, type ParseConnection } from '../../src/adapters/parse/connection.ts';
import { migrateParse, postgresUniqueIndexes } from '../../src/adapters/parse/migrate.ts';
import { classDefinitions, uniqueIndexName } from '../../src/adapters/parse/schema.ts';
import { printLogsOnFailure, startPostgres, stopAllBackends, type PostgresBackend } from '../support/containers.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';

// `pg` arrives with parse-server, without type declarations; this is the little of it the test uses.
interface PgClient {
  connect(): Promise<void>;
  query(sql: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}
const pg = createRequire(import.meta.url)('pg') as { Client: new (config: { connectionString: string }) => PgClient };

let postgres: PostgresBackend;
let parse: ParseServerHandle;
let connection: ParseConnection;

afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [postgres]);

/** `batchmem migrate`, run as a user would, against the test's Parse Server. */
async function cliMigrate(extra: Record<string, string> = {}): Promise<string> {
  const root = join(import.meta.dirname, '..', '..');
  const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      BATCHMEM_STORE: 'parse',
      BATCHMEM_PAYLOADS: 'parse',
      BATCHMEM_SINK: 'parse',
      PARSE_SERVER_URL: parse.serverURL,
      PARSE_APP_ID: parse.appId,
      PARSE_MASTER_KEY: parse.masterKey,
      ...extra,
    },
  });
  return stdout;
}

async function sql(text: string, values?: unknown[]) {
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe('migrateParse', () => {
  beforeAll(async () => {
    postgres = await startPostgres();
    parse = await startParseServer({ databaseURI: postgres.url, organizations: ['acme'] });
    connection = connectParse(parse);
  });

  it('creates every class, index, unique key and role on a fresh server, and verifies them', () => {
    const { changes, problems } = parse.migration;
    expect(problems).toEqual([]);
    for (const { className, indexes, unique } of classDefinitions) {
      expect(changes).toContainEqual(expect.stringMatching(new RegExp(`^class ${className} with fields`)));
      for (const name of Object.keys(indexes)) expect(changes).toContainEqual(expect.stringMatching(new RegExp(`^index ${name} `)));
      for (const fields of unique) expect(changes).toContain(`unique index ${uniqueIndexName(className, fields)}`);
    }
    expect(changes).toContain('role for organization acme');
  });

  it('leaves the database with those indexes', async () => {
    const rows = await sql(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'`);
    const names = new Map(rows.map((row) => [row.indexname as string, row.indexdef as string]));
    expect(names.get('BatchMemoryRequest_unique_batchId')).toMatch(/CREATE UNIQUE INDEX .*\("batchId"\)/);
    expect(names.get('Memory_unique_batchId_index')).toMatch(/CREATE UNIQUE INDEX .*\("batchId", index\)/);
    expect(names.get('status_createdAt')).toMatch(/ON public\."BatchMemoryRequest" .*\(status, "createdAt"\)/);
  });

  it('changes nothing when run again', async () => {
    const lines: string[] = [];
    const again = await migrateParse(connection, { organizations: ['acme'], uniqueIndexes: parse.uniqueIndexes, log: (line) => lines.push(line) });
    expect(again).toEqual({ changes: [], problems: [] });
    expect(lines).toContain('Parse schema: nothing to change');
  });

  it('reports a missing unique index with the SQL to create it, and creates it given the means', async () => {
    await sql('DROP INDEX "BatchSegment_unique_batchId_segment"');
    const withoutMaker = await migrateParse(connection, { log: () => {} });
    expect(withoutMaker.changes).toEqual([]);
    expect(withoutMaker.problems).toEqual([
      expect.stringContaining(
        'CREATE UNIQUE INDEX IF NOT EXISTS "BatchSegment_unique_batchId_segment" ON "BatchSegment" ("batchId", "segment");',
      ),
    ]);
    const repaired = await migrateParse(connection, { uniqueIndexes: parse.uniqueIndexes, log: () => {} });
    expect(repaired).toEqual({ changes: ['unique index BatchSegment_unique_batchId_segment'], problems: [] });
  });

  it('runs as `batchmem migrate`: nothing to change on a migrated server, unique indexes from PARSE_DATABASE_URI', async () => {
    expect(await cliMigrate()).toMatch(/parse: Parse schema: nothing to change\n.*\nstore=parse payloads=parse sink=parse: ready\n$/s);
    await sql('DROP INDEX "BatchMemoryRequest_unique_batchId"');
    const apiKeys = JSON.stringify([{ key: 'k'.repeat(20), organization: 'initech', user: 'u1' }]);
    const out = await cliMigrate({ PARSE_DATABASE_URI: postgres.url, BATCHMEM_API_KEYS: apiKeys });
    expect(out).toContain('parse: created unique index BatchMemoryRequest_unique_batchId\n');
    expect(out).toContain('parse: created role for organization initech\n');
    expect(out).toContain('parse: Parse schema verified');
  });

  it('creates unique indexes from outside the Parse Server process, given the database URL', async () => {
    await sql('DROP INDEX "Memory_unique_batchId_index"');
    await sql('DROP INDEX "BatchVersion_unique_batchId_version"');
    const repaired = await migrateParse(connection, { uniqueIndexes: postgresUniqueIndexes(postgres.url), log: () => {} });
    expect(repaired).toEqual({
      changes: ['unique index BatchVersion_unique_batchId_version', 'unique index Memory_unique_batchId_index'],
      problems: [],
    });
    const [row] = await sql(`SELECT indexdef FROM pg_indexes WHERE indexname = 'Memory_unique_batchId_index'`);
    expect(row?.indexdef).toMatch(/CREATE UNIQUE INDEX .*\("batchId", index\)/);
  });
});
