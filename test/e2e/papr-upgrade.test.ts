// Upgrading in place: a data folder written by batchmem before the Papr fields existed (test/fixtures/data-folder-v0,
// made by that version's server: one completed batch `written-by-v0` of two memories for org-a) is opened by
// today's server, which adds the memories' `attributes` column, keeps serving the old batch, and stores new
// memories with their Papr fields.
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'data-folder-v0');
// The key the fixture's batch was submitted with (its tenant: org-a, namespace default, user u).
const key = 'fixture-key-0123456789abcdef';

function memoryColumns(dir: string): string[] {
  const db = new DatabaseSync(join(dir, 'memories.db'), { readOnly: true });
  try {
    return (db.prepare('PRAGMA table_info(memories)').all() as { name: string }[]).map((c) => c.name);
  } finally {
    db.close();
  }
}

describe('a data folder written before the Papr fields, upgraded in place', () => {
  const dir = tempDir();
  let server: ServerProcess;

  beforeAll(async () => {
    cpSync(fixture, dir.path, { recursive: true });
    expect(memoryColumns(dir.path)).not.toContain('attributes');
    server = await serverProcess({
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_API_KEYS: JSON.stringify([{ key, organization: 'org-a', user: 'u' }]),
      BATCHMEM_WATCH_INTERVAL_MS: '50',
    });
    await server.start();
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('adds the attributes column and still answers the old batch, its results and its Papr status', async () => {
    expect(memoryColumns(dir.path)).toContain('attributes');
    const api = apiClient(server.url, key);
    const old = await api.get('written-by-v0');
    // Its ledger predates write outcomes in the ledger: they are read from the memories, created by this batch.
    expect(old).toMatchObject({ status: 'completed', request_counts: { total: 2, processed: 2, succeeded: 2, failed: 0, created: 2, updated: 0, unchanged: 0 } });
    const results = await api.all<Record<string, unknown>>('/v1/batch/written-by-v0/results');
    expect(results).toEqual([
      // Memories written before upserts existed read back as their first version, created by this batch.
      { index: 0, external_id: 'e1', status: 'succeeded', memory_id: 'mem_916094adeaad1ebc6210058f7843cc26', outcome: 'created', version: 1 },
      { index: 1, external_id: null, status: 'succeeded', memory_id: 'mem_b8ca953c75119b6482d3cadf80addfff', outcome: 'created', version: 1 },
    ]);
    const status = await fetch(`${server.url}/v1/memory/batch/status/written-by-v0`, { headers: { 'x-api-key': key } });
    expect(await status.json()).toMatchObject({ batch_id: 'written-by-v0', total_successful: 2, code: 200 });
    // The old batch has no body fingerprint: its batch_id still answers a repeat with the batch, as before.
    const repeat = await api.submitJson({ batch_id: 'written-by-v0', memories: [{ content: 'from the old version' }] });
    expect(repeat.status).toBe(200);
  });

  it('stores new memories with their Papr fields beside the old ones', async () => {
    const response = await fetch(`${server.url}/v1/memory/batch`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ memories: [{ content: 'after the upgrade', context: [{ role: 'user', content: 'hi' }] }], external_user_id: 'alice' }),
    });
    expect(response.status).toBe(202);
    const { batch_id: batchId } = (await response.json()) as { batch_id: string };
    const api = apiClient(server.url, key);
    expect((await api.waitForFinal(batchId, 30_000)).status).toBe('completed');
    const results = await api.all<Record<string, unknown>>(`/v1/batch/${batchId}/results`);
    expect(results[0]).toMatchObject({ external_user_id: 'alice', context: [{ role: 'user', content: 'hi' }] });
    // A batch of the upgraded database keeps its write outcomes in the ledger (columns added in place).
    expect((await api.get(batchId)).request_counts).toMatchObject({ succeeded: 1, created: 1, updated: 0, unchanged: 0 });
    const db = new DatabaseSync(join(dir.path, 'batchmem.db'), { readOnly: true });
    try {
      const columns = (db.prepare('PRAGMA table_info(batches)').all() as { name: string }[]).map((c) => c.name);
      expect(columns).toEqual(expect.arrayContaining(['created', 'updated', 'unchanged']));
      const legacy = db.prepare("SELECT created FROM batches WHERE record LIKE '%written-by-v0%'").get() as { created: number | null };
      expect(legacy.created).toBeNull();
    } finally {
      db.close();
    }
  });
});
