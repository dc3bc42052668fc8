// MemorySink on SQLite: one row per memory, keyed by its derived id, so a rewritten segment adds nothing.
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryRecord } from '../../domain/memory.ts';
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
  content_hash TEXT NOT NULL,
  organization TEXT NOT NULL,
  namespace TEXT NOT NULL,
  user TEXT NOT NULL,
  workspace TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_by_batch ON memories (batch_key, idx);
`;

export class SqliteMemorySink implements MemorySink {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, schema);
  }

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    const insert = this.#db.prepare(
      `INSERT INTO memories (memory_id, batch_key, idx, content, type, metadata, external_id, content_hash,
                             organization, namespace, user, workspace, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    const now = new Date().toISOString();
    await inTransaction(this.#db, () => {
      for (const r of records) {
        insert.run(
          r.memoryId, r.batchKey, r.index, r.content, r.type, r.metadata ? JSON.stringify(r.metadata) : null,
          r.externalId, r.contentHash, r.tenant.organization, r.tenant.namespace, r.tenant.user, r.tenant.workspace, now,
        );
      }
    });
    return records.map((r) => ({ index: r.index, ok: true, memoryId: r.memoryId }));
  }

  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    const rows = this.#db
      .prepare('SELECT idx, memory_id, external_id FROM memories WHERE batch_key = ? AND idx > ? ORDER BY idx LIMIT ?')
      .all(batchKey, afterIndex, limit) as { idx: number; memory_id: string; external_id: string | null }[];
    return rows.map((r) => ({ index: r.idx, memoryId: r.memory_id, externalId: r.external_id }));
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
