// MemorySink on SQLite: one row per memory (unique per tenant and external id), and one row per batch item saying
// which memory it wrote and how (`memory_writes`), so a rewritten segment adds nothing and reports what it first did.
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import { type WriteCounts, writeOutcome, type WriteOutcomeName } from '../../domain/progress.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { ensureWriteOutcomeTable, inTransaction, openDatabase, writeCountsOf } from './sqlite.ts';

const schema = `
CREATE TABLE IF NOT EXISTS memories (
  memory_id TEXT PRIMARY KEY,
  batch_key TEXT NOT NULL,
  idx INTEGER NOT NULL,
  content TEXT NOT NULL,
  type TEXT,
  metadata TEXT,
  external_id TEXT,
  attributes TEXT,
  content_hash TEXT NOT NULL,
  organization TEXT NOT NULL,
  namespace TEXT NOT NULL,
  user TEXT NOT NULL,
  workspace TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_by_batch ON memories (batch_key, idx);
`;

/**
 * Upgrades a database written by an earlier version in place: columns added since are added (NULL for the rows
 * already there). Each step is idempotent, so concurrent openers (an API and a worker process) may both run it.
 */
function migrate(db: DatabaseSync): void {
  const columns = new Set((db.prepare('PRAGMA table_info(memories)').all() as { name: string }[]).map((c) => c.name));
  for (const [name, type] of [['attributes', 'TEXT'], ['fingerprint', 'TEXT'], ['version', 'INTEGER NOT NULL DEFAULT 1']]) {
    if (columns.has(name!)) continue;
    try {
      db.exec(`ALTER TABLE memories ADD COLUMN ${name} ${type}`);
    } catch (error) {
      // Another process added it between the look and the change.
      if (!/duplicate column/.test(String(error))) throw error;
    }
  }
  // Memories written before upsert existed have no fingerprint and may repeat an external id across batches; the
  // index covers the memories written since, which are the ones an upsert finds.
  db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS memories_by_external_id ON memories (organization, namespace, external_id)
           WHERE external_id IS NOT NULL AND fingerprint IS NOT NULL`);
  // Each memory stored before this table existed was created by the batch item that wrote it.
  ensureWriteOutcomeTable(db, 'memory_writes', 'memories');
}

interface ExistingMemory {
  memory_id: string;
  fingerprint: string;
}

export class SqliteMemorySink implements MemorySink {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, schema);
    migrate(this.#db);
  }

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    const db = this.#db;
    const earlierWrite = db.prepare('SELECT memory_id, outcome FROM memory_writes WHERE batch_key = ? AND idx = ?');
    const byExternalId = db.prepare(
      `SELECT memory_id, fingerprint FROM memories
       WHERE organization = ? AND namespace = ? AND external_id = ? AND fingerprint IS NOT NULL`,
    );
    const insert = db.prepare(
      `INSERT INTO memories (memory_id, batch_key, idx, content, type, metadata, external_id, attributes, content_hash,
                             organization, namespace, user, workspace, created_at, fingerprint, version)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING`,
    );
    const replace = db.prepare(
      `UPDATE memories SET content = ?, type = ?, metadata = ?, attributes = ?, content_hash = ?, fingerprint = ?,
                           version = version + 1
       WHERE memory_id = ?`,
    );
    const noteWrite = db.prepare('INSERT INTO memory_writes (batch_key, idx, memory_id, outcome) VALUES (?, ?, ?, ?)');
    const now = new Date().toISOString();
    const json = (value: unknown) => (value ? JSON.stringify(value) : null);
    // One IMMEDIATE transaction: the look-up and the write of an external id are not separated by another writer's.
    return inTransaction(db, () =>
      records.map((r): ItemOutcome => {
        const earlier = earlierWrite.get(r.batchKey, r.index) as { memory_id: string; outcome: WriteOutcomeName } | undefined;
        if (earlier) return { index: r.index, ok: true, memoryId: earlier.memory_id, outcome: earlier.outcome };
        const existing =
          r.externalId === null
            ? undefined
            : (byExternalId.get(r.tenant.organization, r.tenant.namespace, r.externalId) as ExistingMemory | undefined);
        let memoryId = r.memoryId;
        let outcome: WriteOutcomeName = writeOutcome.created;
        if (!existing) {
          insert.run(
            r.memoryId, r.batchKey, r.index, r.content, r.type, json(r.metadata), r.externalId, json(r.attributes),
            r.contentHash, r.tenant.organization, r.tenant.namespace, r.tenant.user, r.tenant.workspace, now, r.fingerprint,
          );
        } else {
          memoryId = existing.memory_id;
          if (existing.fingerprint === r.fingerprint || r.onExisting === 'skip') {
            outcome = writeOutcome.unchanged;
          } else {
            replace.run(r.content, r.type, json(r.metadata), json(r.attributes), r.contentHash, r.fingerprint, memoryId);
            outcome = writeOutcome.updated;
          }
        }
        noteWrite.run(r.batchKey, r.index, memoryId, outcome);
        return { index: r.index, ok: true, memoryId, outcome };
      }),
    );
  }

  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    const rows = this.#db
      .prepare(
        `SELECT w.idx, w.memory_id, w.outcome, m.external_id, m.attributes, m.version
         FROM memory_writes w JOIN memories m ON m.memory_id = w.memory_id
         WHERE w.batch_key = ? AND w.idx > ? ORDER BY w.idx LIMIT ?`,
      )
      .all(batchKey, afterIndex, limit) as {
      idx: number;
      memory_id: string;
      outcome: WriteOutcomeName;
      external_id: string | null;
      attributes: string | null;
      version: number;
    }[];
    return rows.map((r) => ({
      index: r.idx,
      memoryId: r.memory_id,
      externalId: r.external_id,
      outcome: r.outcome,
      version: r.version,
      attributes: r.attributes === null ? null : (JSON.parse(r.attributes) as MemoryAttributes),
    }));
  }

  async countOutcomes(batchKey: string): Promise<WriteCounts> {
    return writeCountsOf(this.#db, 'memory_writes', batchKey);
  }

  /** SQLite creates its tables when the file is opened: nothing to prepare. */
  async prepare(): Promise<undefined> {
    return undefined;
  }

  async check(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
