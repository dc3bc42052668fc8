// MemorySink on SQLite: one row per memory, keyed by its derived id, so a rewritten segment adds nothing.
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { inTransaction, openDatabase } from './sqlite.ts';

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
  if (!columns.has('attributes')) {
    try {
      db.exec('ALTER TABLE memories ADD COLUMN attributes TEXT');
    } catch (error) {
      // Another process added it between the look and the change.
      if (!/duplicate column/.test(String(error))) throw error;
    }
  }
}

export class SqliteMemorySink implements MemorySink {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, schema);
    migrate(this.#db);
  }

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    const insert = this.#db.prepare(
      `INSERT INTO memories (memory_id, batch_key, idx, content, type, metadata, external_id, attributes, content_hash,
                             organization, namespace, user, workspace, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    const now = new Date().toISOString();
    await inTransaction(this.#db, () => {
      for (const r of records) {
        insert.run(
          r.memoryId, r.batchKey, r.index, r.content, r.type, r.metadata ? JSON.stringify(r.metadata) : null,
          r.externalId, r.attributes ? JSON.stringify(r.attributes) : null, r.contentHash, r.tenant.organization, r.tenant.namespace, r.tenant.user, r.tenant.workspace, now,
        );
      }
    });
    return records.map((r) => ({ index: r.index, ok: true, memoryId: r.memoryId }));
  }

  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    const rows = this.#db
      .prepare('SELECT idx, memory_id, external_id, attributes FROM memories WHERE batch_key = ? AND idx > ? ORDER BY idx LIMIT ?')
      .all(batchKey, afterIndex, limit) as { idx: number; memory_id: string; external_id: string | null; attributes: string | null }[];
    return rows.map((r) => ({
      index: r.idx,
      memoryId: r.memory_id,
      externalId: r.external_id,
      attributes: r.attributes === null ? null : (JSON.parse(r.attributes) as MemoryAttributes),
    }));
  }

  async countByBatch(batchKey: string): Promise<number> {
    const row = this.#db.prepare('SELECT count(*) AS n FROM memories WHERE batch_key = ?').get(batchKey) as { n: number };
    return row.n;
  }

  async check(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
