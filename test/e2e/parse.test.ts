// The end-to-end suite with BATCHMEM_STORE, BATCHMEM_PAYLOADS and BATCHMEM_SINK all on Parse (Parse Server 9
// in-process over the PostgreSQL container), plus what only Parse adds: a segment processed again after its memories
// were written stores no second Memory, and PostgreSQL restarted under a running batch only delays it.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClasses } from '../../src/adapters/parse/schema.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { expectCounts, apiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { printLogsOnFailure, startPostgres, stopAllBackends, type PostgresBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, httpEndToEndSuite, testKeys } from './http.suite.ts';

const root = join(import.meta.dirname, '..', '..');
let postgres: PostgresBackend | undefined;
let parse: ParseServerHandle | undefined;
let starting: Promise<ParseServerHandle> | undefined;
const backend = () =>
  (starting ??= (async () => {
    postgres = await startPostgres();
    parse = await startParseServer({ databaseURI: postgres.url });
    return parse;
  })());
afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [postgres]);

/** The environment a user sets to run batchmem on an existing Parse Server. */
function parseEnv(server: ParseServerHandle): Record<string, string> {
  return {
    BATCHMEM_STORE: 'parse',
    BATCHMEM_PAYLOADS: 'parse',
    BATCHMEM_SINK: 'parse',
    PARSE_SERVER_URL: server.serverURL,
    PARSE_APP_ID: server.appId,
    PARSE_MASTER_KEY: server.masterKey,
  };
}

/** `batchmem migrate`, run as a user would (the test server has migrated already: this proves it changes nothing). */
async function migrate(env: Record<string, string>): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PARSE_DATABASE_URI: postgres!.url },
  });
  return stdout;
}

/** Memory objects Parse holds for a batch, counted with the master key. */
async function storedMemories(server: ParseServerHandle, organization: string, id: string): Promise<number> {
  const where = encodeURIComponent(JSON.stringify({ batchId: batchKey(organization, id) }));
  const response = await fetch(`${server.serverURL}/classes/${parseClasses.memory}?where=${where}&count=1&limit=0`, {
    headers: { 'X-Parse-Application-Id': server.appId, 'X-Parse-Master-Key': server.masterKey },
  });
  return ((await response.json()) as { count: number }).count;
}

/** Items whose outcome the ledger holds (sum over the batch's BatchSegment rows), read with the master key. */
async function recordedItems(server: ParseServerHandle, organization: string, id: string): Promise<number> {
  const where = encodeURIComponent(JSON.stringify({ batchId: batchKey(organization, id) }));
  const response = await fetch(`${server.serverURL}/classes/${parseClasses.segment}?where=${where}&limit=10000`, {
    headers: { 'X-Parse-Application-Id': server.appId, 'X-Parse-Master-Key': server.masterKey },
  });
  const { results } = (await response.json()) as { results: { succeeded: number; failed: number }[] };
  return results.reduce((sum, row) => sum + row.succeeded + row.failed, 0);
}

httpEndToEndSuite(
  'Parse records, payloads and sink',
  async () => {
    const server = await backend();
    const dir = tempDir();
    const env = { BATCHMEM_DATA_DIR: dir.path, ...parseEnv(server) };
    expect(await migrate(env)).toMatch(/nothing to change[\s\S]*store=parse payloads=parse sink=parse: ready\n$/);
    return { env, close: async () => dir.remove() };
  },
  { json: 10_000, ndjson: 20_000 },
);

describe('Parse: faults under a running batch', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  beforeAll(async () => {
    const started = await backend();
    // Small segments, a few at a time, so that the faults below land in the middle of a batch.
    server = await serverProcess({
      ...commonEnv(keys),
      BATCHMEM_DATA_DIR: dir.path,
      ...parseEnv(started),
      BATCHMEM_SEGMENT_MAX_ITEMS: '250',
      BATCHMEM_SEGMENT_CONCURRENCY: '2',
    });
    await server.start();
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('stores no second Memory when segments are processed again after a crash', async () => {
    const api = apiClient(server.url, keys[0]!.key);
    const total = 10_000;
    // External ids of its own: the earlier tests stored ext-0.., which this batch would find unchanged (upsert).
    expect((await api.submitNdjson(ndjsonStream(total, (i) => ({ ...memory(i), external_id: `crash-${i}` })), '?batch_id=parse-crash')).status).toBe(202);
    // Killed while a segment's memories are in Parse but its outcome is not recorded yet: after the restart that
    // segment is processed again and writes the same memories a second time.
    let stored = 0;
    let recorded = 0;
    for (let round = 0; round < 5 && stored <= recorded; round += 1) {
      if (round > 0) await server.start();
      await api.waitFor('parse-crash', (b) => b.request_counts.processed >= 500 * (round + 1));
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const [batch, memories] = await Promise.all([api.get('parse-crash'), storedMemories(parse!, 'org-a', 'parse-crash')]);
        if (memories > batch.request_counts.processed) break;
      }
      await server.kill();
      [stored, recorded] = await Promise.all([storedMemories(parse!, 'org-a', 'parse-crash'), recordedItems(parse!, 'org-a', 'parse-crash')]);
    }
    expect(stored).toBeGreaterThan(recorded);
    await server.start();

    const done = await api.waitForFinal('parse-crash');
    console.info(`[e2e parse] killed with ${stored} memories stored and ${recorded} recorded of ${total}; completed after the restart`);
    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    // The segment written twice is counted with its first write's outcome (created), not as unchanged.
    expect(done.request_counts).toMatchObject({ created: total, updated: 0, unchanged: 0 });
    expect(await storedMemories(parse!, 'org-a', 'parse-crash')).toBe(total);
    const results = await api.all<{ index: number; memory_id: string }>('/v1/batch/parse-crash/results');
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
  });

  it('completes with exact counts when PostgreSQL is restarted mid-batch', async () => {
    const api = apiClient(server.url, keys[1]!.key);
    const total = 20_000;
    expect((await api.submitNdjson(ndjsonStream(total, (i) => ({ ...memory(i), external_id: `pg-restart-${i}` })), '?batch_id=parse-pg-restart')).status).toBe(202);
    const before = await api.waitFor('parse-pg-restart', (b) => b.request_counts.processed > 0);
    const restartedAt = Date.now();
    await postgres!.restart();
    const done = await api.waitForFinal('parse-pg-restart');
    console.info(
      `[e2e parse] PostgreSQL restarted at ${before.request_counts.processed}/${total} processed; ` +
        `completed ${Date.now() - restartedAt} ms later`,
    );
    expect(before.request_counts.processed).toBeLessThan(total);
    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    expect(await storedMemories(parse!, 'org-b', 'parse-pg-restart')).toBe(total);
    const results = await api.all<{ index: number; memory_id: string }>('/v1/batch/parse-pg-restart/results');
    expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
  });
});
