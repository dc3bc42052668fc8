// What the HTTP sink has delivered, kept in SQLite beside batchmem's data: the memory id, where it sits in its batch,
// and the id the target gave it; for upsert by external id, the value last sent for each tenant's external id
// (`sent_memories`) and what each batch item did (`item_writes`). Results and counts are read from here, since the
// target is not ours to query.
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import { type WriteCounts, writeOutcome, type WriteOutcomeName } from '../../domain/progress.ts';
import { ensureWriteOutcomeTable, inTransaction, openDatabase, writeCountsOf } from '../local/sqlite.ts';

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
CREATE TABLE IF NOT EXISTS sent_memories (
  organization TEXT NOT NULL,
  namespace TEXT NOT NULL,
  external_id TEXT NOT NULL,
  memory_id TEXT NOT NULL,
  fingerprint TEXT,
  version INTEGER NOT NULL,
  written_by TEXT NOT NULL,
  PRIMARY KEY (organization, namespace, external_id)
);
CREATE INDEX IF NOT EXISTS sent_memories_by_id ON sent_memories (memory_id);
`;

/**
 * What writing one record means, decided against what was sent before under its external id: send it (as `memoryId`,
 * the id the memory keeps) or not, and the outcome the item reports once it is delivered.
 */
export interface WritePlan {
  record: MemoryRecord;
  memoryId: string;
  outcome: WriteOutcomeName;
  send: boolean;
}

const writerOf = (r: MemoryRecord) => `${r.batchKey}:${r.index}`;

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
    // Every segment adds rows at scattered places in three tables, so a checkpoint every 1,000 pages (SQLite's
    // default) copied mostly the same pages again and again; every 10,000 (a WAL of up to about 40 MB, truncated back
    // to 16 MB after a checkpoint) cut the ledger's time per 1,000 memories by about a quarter (docs/benchmarks.md).
    this.#db.exec('PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 16777216');
    // Deliveries recorded before this table existed each created their memory.
    ensureWriteOutcomeTable(this.#db, 'item_writes', 'deliveries');
  }

  /** The outcomes already recorded for items of a batch (a retried segment), by index. */
  earlierWrites(batchKey: string, fromIndex: number, toIndex: number): Map<number, { memoryId: string; outcome: WriteOutcomeName }> {
    const rows = this.#db
      .prepare('SELECT idx, memory_id, outcome FROM item_writes WHERE batch_key = ? AND idx BETWEEN ? AND ?')
      .all(batchKey, fromIndex, toIndex) as { idx: number; memory_id: string; outcome: WriteOutcomeName }[];
    return new Map(rows.map((r) => [r.idx, { memoryId: r.memory_id, outcome: r.outcome }]));
  }

  /**
   * Decides each record against the value last sent under its external id and claims the new value at once (one
   * IMMEDIATE transaction, so two writers of one external id, in this process or another, never both create it).
   * A record written by this same item before (a retry) keeps the outcome it had.
   */
  async plan(records: MemoryRecord[]): Promise<WritePlan[]> {
    const find = this.#db.prepare(
      'SELECT memory_id, fingerprint, written_by FROM sent_memories WHERE organization = ? AND namespace = ? AND external_id = ?',
    );
    const claim = this.#db.prepare(
      `INSERT INTO sent_memories (organization, namespace, external_id, memory_id, fingerprint, version, written_by)
       VALUES (?, ?, ?, ?, ?, 1, ?)`,
    );
    const replace = this.#db.prepare(
      `UPDATE sent_memories SET fingerprint = ?, version = version + 1, written_by = ?
       WHERE organization = ? AND namespace = ? AND external_id = ?`,
    );
    return inTransaction(this.#db, () =>
      records.map((r): WritePlan => {
        if (r.externalId === null) return { record: r, memoryId: r.memoryId, outcome: writeOutcome.created, send: true };
        const { organization, namespace } = r.tenant;
        const sent = find.get(organization, namespace, r.externalId) as { memory_id: string; fingerprint: string | null; written_by: string } | undefined;
        if (!sent) {
          claim.run(organization, namespace, r.externalId, r.memoryId, r.fingerprint, writerOf(r));
          return { record: r, memoryId: r.memoryId, outcome: writeOutcome.created, send: true };
        }
        if (sent.written_by === writerOf(r) && sent.fingerprint === r.fingerprint) {
          const outcome = sent.memory_id === r.memoryId ? writeOutcome.created : writeOutcome.updated;
          return { record: r, memoryId: sent.memory_id, outcome, send: true };
        }
        if (sent.fingerprint === r.fingerprint || r.onExisting === 'skip') {
          return { record: r, memoryId: sent.memory_id, outcome: writeOutcome.unchanged, send: false };
        }
        replace.run(r.fingerprint, writerOf(r), organization, namespace, r.externalId);
        return { record: r, memoryId: sent.memory_id, outcome: writeOutcome.updated, send: true };
      }),
    );
  }

  /**
   * Settles a segment once its chunks are answered, in one IMMEDIATE transaction (one commit per segment rather than
   * three: the commits were a large part of the ledger's cost per memory, and a crash now leaves all or none):
   * - `deliveries`: what the target accepted. One already recorded keeps its first row and target id (a replayed
   *   answer may lack the target's id), taking the attributes of the value sent last (an updated memory).
   * - `released`: the claims of records the target refused are given up: a created one is forgotten, an updated one's
   *   value unknown (so the next write of it is sent again).
   * - `writes`: what each stored item did; an item recorded already keeps its first outcome.
   */
  async settle(
    batchKey: string,
    deliveries: Delivery[],
    released: WritePlan[],
    writes: { index: number; memoryId: string; outcome: WriteOutcomeName }[],
  ): Promise<void> {
    const deliver = this.#db.prepare(
      `INSERT INTO deliveries (memory_id, batch_key, idx, external_id, attributes, sink_id, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (memory_id) DO UPDATE SET sink_id = coalesce(deliveries.sink_id, excluded.sink_id), attributes = excluded.attributes`,
    );
    const forget = this.#db.prepare('DELETE FROM sent_memories WHERE organization = ? AND namespace = ? AND external_id = ? AND written_by = ? AND version = 1');
    const unknown = this.#db.prepare('UPDATE sent_memories SET fingerprint = NULL WHERE organization = ? AND namespace = ? AND external_id = ? AND written_by = ?');
    const write = this.#db.prepare('INSERT INTO item_writes (batch_key, idx, memory_id, outcome) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
    const now = new Date().toISOString();
    await inTransaction(this.#db, () => {
      for (const d of deliveries) {
        deliver.run(d.memoryId, d.batchKey, d.index, d.externalId, d.attributes ? JSON.stringify(d.attributes) : null, d.sinkId, now);
      }
      for (const p of released) {
        if (p.record.externalId === null) continue;
        const { organization, namespace } = p.record.tenant;
        forget.run(organization, namespace, p.record.externalId, writerOf(p.record));
        unknown.run(organization, namespace, p.record.externalId, writerOf(p.record));
      }
      for (const w of writes) write.run(batchKey, w.index, w.memoryId, w.outcome);
    });
  }

  countOutcomes(batchKey: string): WriteCounts {
    return writeCountsOf(this.#db, 'item_writes', batchKey);
  }

  /** The memory ids of a batch delivered with an index in [fromIndex, toIndex]. */
  delivered(batchKey: string, fromIndex: number, toIndex: number): Set<string> {
    const rows = this.#db
      .prepare('SELECT memory_id FROM deliveries WHERE batch_key = ? AND idx BETWEEN ? AND ?')
      .all(batchKey, fromIndex, toIndex) as { memory_id: string }[];
    return new Set(rows.map((r) => r.memory_id));
  }

  /** The items of a batch that stored a memory, by index, with the memory's delivery and its version now. */
  list(batchKey: string, afterIndex: number, limit: number): (Delivery & { outcome: WriteOutcomeName; version: number })[] {
    const rows = this.#db
      .prepare(
        `SELECT w.idx, w.memory_id, w.outcome, d.external_id, d.attributes, d.sink_id,
                (SELECT s.version FROM sent_memories s WHERE s.memory_id = w.memory_id) AS version
         FROM item_writes w LEFT JOIN deliveries d ON d.memory_id = w.memory_id
         WHERE w.batch_key = ? AND w.idx > ? ORDER BY w.idx LIMIT ?`,
      )
      .all(batchKey, afterIndex, limit) as {
      idx: number;
      memory_id: string;
      outcome: WriteOutcomeName;
      external_id: string | null;
      attributes: string | null;
      sink_id: string | null;
      version: number | null;
    }[];
    return rows.map((r) => ({
      memoryId: r.memory_id,
      batchKey,
      index: r.idx,
      externalId: r.external_id,
      attributes: r.attributes === null ? null : (JSON.parse(r.attributes) as MemoryAttributes),
      sinkId: r.sink_id,
      outcome: r.outcome,
      version: r.version ?? 1,
    }));
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
