// What the HTTP sink has delivered, kept in SQLite beside batchmem's data: the memory id, where it sits in its batch,
// and the id the target gave it. Results and counts are read from here, since the target is not ours to query.
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryAttributes } from '../../domain/memory.ts';
import { inTransaction, openDatabase } from '../local/sqlite.ts';

const schema = `
CREATE TABLE IF NOT EXISTS deliveries (
  memory_id TEXT PRIMARY KEY,
  batch_key TEXT NOT NULL,
  idx INTEGER NOT NULL,
  external_id TEXT,
  attributes TEXT,
  sink_id TEXT,
  delivered_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_by_batch ON deliveries (batch_key, idx);
`;

export interface Delivery {
  memoryId: string;
  batchKey: string;
  index: number;
  externalId: string | null;
  /** The Papr fields the memory was written with. */
  attributes: MemoryAttributes | null;
  /** The target's own id for the memory, when its answer named one. */
  sinkId: string | null;
}

export class DeliveryLedger {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, schema);
  }

  /** Records deliveries; one already recorded keeps its first row (a replayed answer may lack the target's id). */
  async record(deliveries: Delivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    const insert = this.#db.prepare(
      `INSERT INTO deliveries (memory_id, batch_key, idx, external_id, attributes, sink_id, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (memory_id) DO UPDATE SET sink_id = coalesce(deliveries.sink_id, excluded.sink_id)`,
    );
    const now = new Date().toISOString();
    await inTransaction(this.#db, () => {
      for (const d of deliveries) {
        insert.run(d.memoryId, d.batchKey, d.index, d.externalId, d.attributes ? JSON.stringify(d.attributes) : null, d.sinkId, now);
      }
    });
  }

  /** The memory ids of a batch delivered with an index in [fromIndex, toIndex]. */
  delivered(batchKey: string, fromIndex: number, toIndex: number): Set<string> {
    const rows = this.#db
      .prepare('SELECT memory_id FROM deliveries WHERE batch_key = ? AND idx BETWEEN ? AND ?')
      .all(batchKey, fromIndex, toIndex) as { memory_id: string }[];
    return new Set(rows.map((r) => r.memory_id));
  }

  list(batchKey: string, afterIndex: number, limit: number): Delivery[] {
    const rows = this.#db
      .prepare('SELECT memory_id, idx, external_id, attributes, sink_id FROM deliveries WHERE batch_key = ? AND idx > ? ORDER BY idx LIMIT ?')
      .all(batchKey, afterIndex, limit) as { memory_id: string; idx: number; external_id: string | null; attributes: string | null; sink_id: string | null }[];
    return rows.map((r) => ({
      memoryId: r.memory_id,
      batchKey,
      index: r.idx,
      externalId: r.external_id,
      attributes: r.attributes === null ? null : (JSON.parse(r.attributes) as MemoryAttributes),
      sinkId: r.sink_id,
    }));
  }

  count(batchKey: string): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM deliveries WHERE batch_key = ?').get(batchKey) as { n: number }).n;
  }

  sinkIds(memoryIds: string[]): Map<string, string> {
    const found = new Map<string, string>();
    const select = this.#db.prepare('SELECT sink_id FROM deliveries WHERE memory_id = ?');
    for (const id of memoryIds) {
      const row = select.get(id) as { sink_id: string | null } | undefined;
      if (row?.sink_id) found.set(id, row.sink_id);
    }
    return found;
  }

  check(): void {
    this.#db.prepare('SELECT 1').get();
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
