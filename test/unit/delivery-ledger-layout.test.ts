// The HTTP sink's delivery ledger, opened on a file written by the first layout (one delivery row per memory, keyed by
// memory id): every item keeps what it listed before the migration, the memory-id indexes are gone, and new writes
// upsert against what the old file recorded. Real SQLite files; nothing faked.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveryLedger } from '../../src/adapters/http/delivery-ledger.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { tenantA } from '../support/batches.ts';
import { tempDir } from '../support/local-context.ts';

/** The first layout's tables, as that version created them. */
const firstLayout = `
CREATE TABLE deliveries (memory_id TEXT PRIMARY KEY, batch_key TEXT NOT NULL, idx INTEGER NOT NULL, external_id TEXT,
  attributes TEXT, sink_id TEXT, delivered_at TEXT NOT NULL);
CREATE UNIQUE INDEX deliveries_by_batch ON deliveries (batch_key, idx);
CREATE TABLE sent_memories (organization TEXT NOT NULL, namespace TEXT NOT NULL, external_id TEXT NOT NULL,
  memory_id TEXT NOT NULL, fingerprint TEXT, version INTEGER NOT NULL, written_by TEXT NOT NULL,
  PRIMARY KEY (organization, namespace, external_id));
CREATE INDEX sent_memories_by_id ON sent_memories (memory_id);
`;
const itemWrites = `CREATE TABLE item_writes (batch_key TEXT NOT NULL, idx INTEGER NOT NULL, memory_id TEXT NOT NULL,
  outcome TEXT NOT NULL, PRIMARY KEY (batch_key, idx)) WITHOUT ROWID`;

const at = '2026-11-01T00:00:00.000Z';

/**
 * Batch A created m1 (external id e1, target id s1) and m2 (no external id, target id s2); batch B updated m1 (the row
 * took B's attributes, kept s1); batch C found m1 unchanged. The first layout kept one row for m1, at A's item.
 */
function writeFirstLayout(path: string, withOutcomes = true): void {
  const db = new DatabaseSync(path);
  db.exec(firstLayout);
  const deliver = db.prepare('INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?)');
  deliver.run('m1', 'A', 0, 'e1', JSON.stringify({ user_id: 'from-b' }), 's1', at);
  deliver.run('m2', 'A', 1, null, JSON.stringify({ user_id: 'from-a' }), 's2', at);
  db.prepare('INSERT INTO sent_memories VALUES (?, ?, ?, ?, ?, ?, ?)').run(tenantA.organization, tenantA.namespace, 'e1', 'm1', 'fp-b', 2, 'B:0');
  if (withOutcomes) {
    db.exec(itemWrites);
    const write = db.prepare('INSERT INTO item_writes VALUES (?, ?, ?, ?)');
    write.run('A', 0, 'm1', 'created');
    write.run('A', 1, 'm2', 'created');
    write.run('B', 0, 'm1', 'updated');
    write.run('C', 0, 'm1', 'unchanged');
  }
  db.close();
}

const listed = (ledger: DeliveryLedger, batch: string) =>
  ledger.list(batch, -1, 10).map(({ index, memoryId, externalId, attributes, sinkId, outcome, version }) => ({ index, memoryId, externalId, attributes, sinkId, outcome, version }));

describe('delivery ledger layout', () => {
  let cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const done of cleanup.reverse()) done();
    cleanup = [];
  });

  function file(): string {
    const dir = tempDir();
    cleanup.push(dir.remove);
    return join(dir.path, 'ledger.db');
  }

  function open(path: string): DeliveryLedger {
    const ledger = new DeliveryLedger(path);
    cleanup.unshift(() => ledger.close());
    return ledger;
  }

  it('migrates a first-layout file: every item lists the memory as it stood, and the memory-id indexes are gone', () => {
    const path = file();
    writeFirstLayout(path);
    const ledger = open(path);
    const m1 = { memoryId: 'm1', externalId: 'e1', attributes: { user_id: 'from-b' }, sinkId: 's1', version: 2 };
    expect(listed(ledger, 'A')).toEqual([
      { index: 0, ...m1, outcome: 'created' },
      { index: 1, memoryId: 'm2', externalId: null, attributes: { user_id: 'from-a' }, sinkId: 's2', outcome: 'created', version: 1 },
    ]);
    expect(listed(ledger, 'B')).toEqual([{ index: 0, ...m1, outcome: 'updated' }]);
    expect(listed(ledger, 'C')).toEqual([{ index: 0, ...m1, outcome: 'unchanged' }]);
    expect(ledger.countOutcomes('A')).toMatchObject({ created: 2, updated: 0, unchanged: 0 });
    expect(ledger.delivered('B', 0, 0)).toEqual(new Set(['m1']));
    ledger.close();

    const db = new DatabaseSync(path);
    const indexes = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index'").all() as { name: string }[]).map((r) => r.name);
    expect(indexes).not.toContain('sent_memories_by_id');
    expect(indexes).not.toContain('deliveries_by_batch');
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
    expect(tables.sort()).toEqual(['batch_tenants', 'deliveries', 'item_writes', 'sent_memories']);
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: 2 });
    db.close();
  });

  it('migrates a file older still (no item outcomes): each delivery created its memory', () => {
    const path = file();
    writeFirstLayout(path, false);
    const ledger = open(path);
    expect(listed(ledger, 'A').map((m) => [m.index, m.memoryId, m.outcome, m.sinkId, m.version])).toEqual([
      [0, 'm1', 'created', 's1', 2],
      [1, 'm2', 'created', 's2', 1],
    ]);
  });

  it('upserts new writes against what a migrated file recorded, and opens a migrated file again unchanged', async () => {
    const path = file();
    writeFirstLayout(path);
    open(path).close();
    const ledger = open(path);
    // Another batch writes external id e1 with a new value: the memory keeps its id m1 and goes to version 3.
    const record = { ...toMemoryRecord('D', tenantA, 0, { content: 'new value', external_id: 'e1' }) };
    const [plan] = await ledger.plan([record]);
    expect(plan).toMatchObject({ memoryId: 'm1', outcome: 'updated', send: true });
    await ledger.settle(
      'D',
      [{ memoryId: 'm1', batchKey: 'D', index: 0, externalId: 'e1', attributes: null, sinkId: 's3' }],
      [],
      [{ index: 0, memoryId: 'm1', externalId: 'e1', outcome: 'updated' }],
    );
    // An item that sent the memory lists the target's answer to its own delivery; one that sent nothing (C found it
    // unchanged) lists the delivery that last sent it. The value is D's everywhere.
    const m1 = { memoryId: 'm1', externalId: 'e1', attributes: null, version: 3 };
    expect(listed(ledger, 'D')).toEqual([{ index: 0, ...m1, sinkId: 's3', outcome: 'updated' }]);
    expect(listed(ledger, 'C')).toEqual([{ index: 0, ...m1, sinkId: 's3', outcome: 'unchanged' }]);
    expect(listed(ledger, 'A')[0]).toEqual({ index: 0, ...m1, sinkId: 's1', outcome: 'created' });
  });

  it('after the target refuses an update, an item that found the memory unchanged still lists the last delivery', async () => {
    const ledger = open(file());
    const write = async (batch: string, content: string, answer: 'accept' | 'refuse', sinkId: string | null = null) => {
      const [plan] = await ledger.plan([toMemoryRecord(batch, tenantA, 0, { content, external_id: 'e1' })]);
      const delivery = { memoryId: plan!.memoryId, batchKey: batch, index: 0, externalId: 'e1', attributes: { user_id: `from-${batch}` }, sinkId };
      const stored = plan!.send ? answer === 'accept' : true;
      await ledger.settle(
        batch,
        plan!.send && stored ? [delivery] : [],
        plan!.send && !stored ? [plan!] : [],
        stored ? [{ index: 0, memoryId: plan!.memoryId, externalId: 'e1', outcome: plan!.outcome }] : [],
      );
      return plan!;
    };
    const created = await write('A', 'v1', 'accept', 's1');
    expect(await write('C', 'v1', 'accept')).toMatchObject({ outcome: 'unchanged', send: false });
    expect(await write('D', 'v2', 'refuse')).toMatchObject({ outcome: 'updated', send: true });
    // The target still holds A's value: C lists A's delivery, as it did before D.
    expect(listed(ledger, 'C')).toEqual([
      { index: 0, memoryId: created.memoryId, externalId: 'e1', attributes: { user_id: 'from-A' }, sinkId: 's1', outcome: 'unchanged', version: 2 },
    ]);
    // The value is unknown after the refusal, so the next write is sent, under the memory's id, and becomes the last.
    expect(await write('E', 'v1', 'accept', 's5')).toMatchObject({ memoryId: created.memoryId, outcome: 'updated', send: true });
    expect(listed(ledger, 'C')[0]).toMatchObject({ attributes: { user_id: 'from-E' }, sinkId: 's5' });
  });

  it('migrates a memory whose last update the target refused: the items that found it unchanged keep its delivery', () => {
    const path = file();
    writeFirstLayout(path);
    // D's update of m1 was refused: the first layout left its value unknown and D as its writer, with no item of D.
    const db = new DatabaseSync(path);
    db.prepare("UPDATE sent_memories SET fingerprint = NULL, version = 3, written_by = 'D:0' WHERE external_id = 'e1'").run();
    db.close();
    const ledger = open(path);
    expect(listed(ledger, 'C')).toEqual([
      { index: 0, memoryId: 'm1', externalId: 'e1', attributes: { user_id: 'from-b' }, sinkId: 's1', outcome: 'unchanged', version: 3 },
    ]);
    expect(listed(ledger, 'B')[0]).toMatchObject({ attributes: { user_id: 'from-b' }, sinkId: 's1' });
  });

  it('waits for another process that holds the write lock (an API and a worker starting together, one migrating)', async () => {
    const path = file();
    writeFirstLayout(path);
    // The other process (batchmem of the first layout ran the file in WAL mode) takes the lock the migration takes and
    // keeps it 1 s, about what migrating 30,000 deliveries takes; this process opens the ledger meanwhile.
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `import { DatabaseSync } from 'node:sqlite'; const db = new DatabaseSync(process.argv[1]);
       db.exec('PRAGMA journal_mode = WAL; BEGIN IMMEDIATE'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 1000);`, path],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => holder.on('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('locked') && resolve());
      holder.on('exit', (code) => reject(new Error(`the lock holder exited (${code}) before taking the lock`)));
    });
    const started = Date.now();
    const ledger = open(path);
    expect(Date.now() - started).toBeGreaterThan(200);
    expect(await exited).toBe(0);
    expect(listed(ledger, 'C')).toEqual([
      { index: 0, memoryId: 'm1', externalId: 'e1', attributes: { user_id: 'from-b' }, sinkId: 's1', outcome: 'unchanged', version: 2 },
    ]);
  });

  it('refuses a file of a newer layout rather than guessing at it', () => {
    const path = file();
    const db = new DatabaseSync(path);
    db.exec('PRAGMA user_version = 3');
    db.close();
    expect(() => new DeliveryLedger(path)).toThrow(/^cannot open the HTTP sink's delivery ledger .*ledger\.db: .*layout 3, newer than this batchmem knows \(2\)/);
  });
});
