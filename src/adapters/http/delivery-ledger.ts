// What the HTTP sink has delivered, kept in SQLite beside batchmem's data: per batch item, the memory id it was sent
// as and the id the target gave it (`deliveries`); for upsert by external id, the value last sent for each tenant's
// external id (`sent_memories`); and what each batch item did (`item_writes`). Results and counts are read from here,
// since the target is not ours to query.
//
// Every table is keyed by something a segment writes in order (batch and index) or by the external id the upsert
// must look up; nothing is keyed by memory id. Memory ids are hashes, so an index on them takes each segment's rows
// at scattered pages, and each commit wrote every page it touched to the WAL again: with two such indexes the
// ledger's time per 1,000 memories grew from 25 ms at 50,000 rows to 78 ms at 300,000; without them it stays at 12 to
// 18 ms (bench/ledger-growth.ts, docs/benchmarks.md).
import type { DatabaseSync } from 'node:sqlite';
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import { type WriteCounts, writeOutcome, type WriteOutcomeName } from '../../domain/progress.ts';
import { addMissingColumns, ensureWriteOutcomeTable, inTransaction, openDatabase, writeCountsOf } from '../local/sqlite.ts';

/** The ledger's layout; `PRAGMA user_version` holds the one a file was last brought to. 0 is a new file or the first layout. */
const layoutVersion = 2;

const tables = `
CREATE TABLE IF NOT EXISTS deliveries (
  batch_key TEXT NOT NULL,
  idx INTEGER NOT NULL,
  memory_id TEXT NOT NULL,
  external_id TEXT,
  attributes TEXT,
  sink_id TEXT,
  delivered_at TEXT NOT NULL,
  PRIMARY KEY (batch_key, idx)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS batch_tenants (
  batch_key TEXT PRIMARY KEY,
  organization TEXT NOT NULL,
  namespace TEXT NOT NULL
) WITHOUT ROWID;
`;

/**
 * Brings a ledger of the first layout (one `deliveries` row per memory, keyed by memory id, holding the value sent last
 * and the target's first id; `sent_memories` indexed by memory id) to layout 2, in the caller's transaction: each
 * item that sent a memory gets its own delivery row (an update's row takes the memory's row as it stood: its value
 * sent last and the target's first id), item rows get their external id, batches naming external ids get their
 * tenant, and the two memory-id indexes go. A memory whose last update the target refused (its value unknown) names
 * that refused item as its writer, which has no delivery: it names the memory's delivery row instead, so the items
 * that found it unchanged still list the target's id and attributes, as the first layout listed them. (Batch keys
 * hold no ':', so the writer's key is what precedes the first one.)
 */
function migrateFromFirstLayout(db: DatabaseSync): void {
  // Outcomes were added to the first layout later: a ledger older still has every delivery as a created item.
  ensureWriteOutcomeTable(db, 'item_writes', 'deliveries');
  addMissingColumns(db, 'item_writes', [['external_id', 'TEXT']]);
  db.exec(`
    ALTER TABLE deliveries RENAME TO deliveries_by_memory;
    ${tables}
    INSERT INTO deliveries (batch_key, idx, memory_id, external_id, attributes, sink_id, delivered_at)
      SELECT batch_key, idx, memory_id, external_id, attributes, sink_id, delivered_at FROM deliveries_by_memory;
    INSERT OR IGNORE INTO deliveries (batch_key, idx, memory_id, external_id, attributes, sink_id, delivered_at)
      SELECT w.batch_key, w.idx, d.memory_id, d.external_id, d.attributes, d.sink_id, d.delivered_at
      FROM item_writes w JOIN deliveries_by_memory d ON d.memory_id = w.memory_id
      WHERE w.outcome = '${writeOutcome.updated}';
    UPDATE item_writes SET external_id = (SELECT d.external_id FROM deliveries_by_memory d WHERE d.memory_id = item_writes.memory_id);
    INSERT OR IGNORE INTO batch_tenants (batch_key, organization, namespace)
      SELECT w.batch_key, s.organization, s.namespace FROM item_writes w JOIN sent_memories s ON s.memory_id = w.memory_id;
    UPDATE sent_memories SET written_by = (SELECT d.batch_key || ':' || d.idx FROM deliveries_by_memory d WHERE d.memory_id = sent_memories.memory_id)
      WHERE fingerprint IS NULL
        AND EXISTS (SELECT 1 FROM deliveries_by_memory d WHERE d.memory_id = sent_memories.memory_id)
        AND NOT EXISTS (SELECT 1 FROM deliveries n
                        WHERE n.batch_key = substr(sent_memories.written_by, 1, instr(sent_memories.written_by, ':') - 1)
                          AND n.idx = CAST(substr(sent_memories.written_by, instr(sent_memories.written_by, ':') + 1) AS INTEGER));
    DROP TABLE deliveries_by_memory;
    DROP INDEX IF EXISTS sent_memories_by_id;
  `);
}

/**
 * How long opening the ledger waits for another process's write lock. An API and a worker process started together
 * on a ledger of the first layout: one migrates it while the other waits, and migrating 300,000 deliveries took
 * 11 s on two busy cores, so the driver's usual 50 ms wait failed the second process at start ("database is locked").
 */
const openLockWaitMs = 300_000;

/**
 * Opens the ledger at `path`, creating or migrating its tables under a write lock (another process may open it too,
 * and waits up to `openLockWaitMs`, synchronously: the process has no sink until then). Throws SQLite's error when
 * the lock stays taken longer, or the file cannot be written.
 */
function openLedger(path: string): DatabaseSync {
  try {
    return openLedgerTables(path);
  } catch (error) {
    // SQLite's own messages ("attempt to write a readonly database") do not say which file.
    throw new Error(`cannot open the HTTP sink's delivery ledger ${path}: ${(error as Error).message}`, { cause: error });
  }
}

function openLedgerTables(path: string): DatabaseSync {
  const db = openDatabase(path, '');
  const { timeout: usualWait } = db.prepare('PRAGMA busy_timeout').get() as { timeout: number };
  db.exec(`PRAGMA busy_timeout = ${openLockWaitMs}`);
  try {
    db.exec('BEGIN IMMEDIATE');
    const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
    if (version < layoutVersion) {
      const firstLayout = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").get() !== undefined;
      if (firstLayout) migrateFromFirstLayout(db);
      else {
        db.exec(tables);
        ensureWriteOutcomeTable(db, 'item_writes', 'deliveries');
        addMissingColumns(db, 'item_writes', [['external_id', 'TEXT']]);
      }
      db.exec(`PRAGMA user_version = ${layoutVersion}`);
    } else if (version > layoutVersion) {
      throw new Error(`the delivery ledger ${path} has layout ${version}, newer than this batchmem knows (${layoutVersion})`);
    }
    db.exec('COMMIT');
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    db.close();
    throw error;
  }
  db.exec(`PRAGMA busy_timeout = ${usualWait}`);
  return db;
}

/**
 * What writing one record means, decided against what was sent before under its external id: send it (as `memoryId`,
 * the id the memory keeps) or not, and the outcome the item reports once it is delivered.
 */
export interface WritePlan {
  record: MemoryRecord;
  memoryId: string;
  outcome: WriteOutcomeName;
  send: boolean;
  /**
   * For an update, the item (`batchKey:index`) that wrote the value it replaces: if the target refuses the update, the
   * memory's last delivery is that item's again, and the items listing the memory keep its target id and attributes.
   */
  previousWriter?: string;
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
    this.#db = openLedger(path);
    // Each segment's rows land at scattered pages of `sent_memories` (keyed by external id), so a checkpoint every 1,000
    // pages (SQLite's default) copied mostly the same pages again and again; every 10,000 (a WAL of up to about 40 MB,
    // truncated back to 16 MB after a checkpoint) cut the ledger's time per 1,000 memories by about a quarter.
    this.#db.exec('PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 16777216');
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
    const tenantOf = this.#db.prepare('INSERT OR IGNORE INTO batch_tenants (batch_key, organization, namespace) VALUES (?, ?, ?)');
    return inTransaction(this.#db, () => {
      // A batch's items share its tenant: listing them finds their external ids' rows through it.
      const named = records.find((r) => r.externalId !== null);
      if (named) tenantOf.run(named.batchKey, named.tenant.organization, named.tenant.namespace);
      return records.map((r): WritePlan => {
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
        return { record: r, memoryId: sent.memory_id, outcome: writeOutcome.updated, send: true, previousWriter: sent.written_by };
      });
    });
  }

  /**
   * Settles a segment once its chunks are answered, in one IMMEDIATE transaction (one commit per segment rather than
   * three: the commits were a large part of the ledger's cost per memory, and a crash now leaves all or none):
   * - `deliveries`: what the target accepted, per item. An item delivered before (a retried segment) keeps the
   *   target id it was first given (a replayed answer may lack it) and takes the attributes sent now.
   * - `released`: the claims of records the target refused are given up: a created one is forgotten, an updated one's
   *   value unknown (so the next write of it is sent again) and its last delivery the one before the refused update
   *   (which listing an item that found the memory unchanged reads its target id and attributes from).
   * - `writes`: what each stored item did, with its external id; an item recorded already keeps its first outcome.
   */
  async settle(
    batchKey: string,
    deliveries: Delivery[],
    released: WritePlan[],
    writes: { index: number; memoryId: string; externalId: string | null; outcome: WriteOutcomeName }[],
  ): Promise<void> {
    const deliver = this.#db.prepare(
      `INSERT INTO deliveries (batch_key, idx, memory_id, external_id, attributes, sink_id, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (batch_key, idx) DO UPDATE SET sink_id = coalesce(deliveries.sink_id, excluded.sink_id), attributes = excluded.attributes`,
    );
    const forget = this.#db.prepare('DELETE FROM sent_memories WHERE organization = ? AND namespace = ? AND external_id = ? AND written_by = ? AND version = 1');
    const unknown = this.#db.prepare(
      `UPDATE sent_memories SET fingerprint = NULL, written_by = coalesce(?, written_by)
       WHERE organization = ? AND namespace = ? AND external_id = ? AND written_by = ?`,
    );
    const write = this.#db.prepare('INSERT INTO item_writes (batch_key, idx, memory_id, external_id, outcome) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    const now = new Date().toISOString();
    await inTransaction(this.#db, () => {
      for (const d of deliveries) {
        deliver.run(d.batchKey, d.index, d.memoryId, d.externalId, d.attributes ? JSON.stringify(d.attributes) : null, d.sinkId, now);
      }
      for (const p of released) {
        if (p.record.externalId === null) continue;
        const { organization, namespace } = p.record.tenant;
        forget.run(organization, namespace, p.record.externalId, writerOf(p.record));
        unknown.run(p.previousWriter ?? null, organization, namespace, p.record.externalId, writerOf(p.record));
      }
      for (const w of writes) write.run(batchKey, w.index, w.memoryId, w.externalId, w.outcome);
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

  /**
   * The items of a batch that stored a memory, by index, each with the memory as it stands: for a memory with an
   * external id, its version now and the attributes of the delivery that last sent it; for one without, the item's
   * own delivery. The target's id is from the answer to the item's own delivery, or, for an item that sent nothing (it
   * found the memory unchanged), to the delivery that last sent it.
   */
  list(batchKey: string, afterIndex: number, limit: number): (Delivery & { outcome: WriteOutcomeName; version: number })[] {
    const rows = this.#db
      .prepare(
        `SELECT w.idx, w.memory_id, w.outcome, w.external_id, d.attributes, d.sink_id, d.idx IS NOT NULL AS sent
         FROM item_writes w LEFT JOIN deliveries d ON d.batch_key = w.batch_key AND d.idx = w.idx
         WHERE w.batch_key = ? AND w.idx > ? ORDER BY w.idx LIMIT ?`,
      )
      .all(batchKey, afterIndex, limit) as {
      idx: number;
      memory_id: string;
      outcome: WriteOutcomeName;
      external_id: string | null;
      attributes: string | null;
      sink_id: string | null;
      sent: number;
    }[];
    const tenant = this.#db.prepare('SELECT organization, namespace FROM batch_tenants WHERE batch_key = ?').get(batchKey) as
      | { organization: string; namespace: string }
      | undefined;
    const sent = this.#db.prepare('SELECT version, written_by FROM sent_memories WHERE organization = ? AND namespace = ? AND external_id = ?');
    const delivery = this.#db.prepare('SELECT attributes, sink_id FROM deliveries WHERE batch_key = ? AND idx = ?');
    /** The memory an external id names now: its version, and the delivery of the item that last wrote it, if it was delivered. */
    const memoryNow = (externalId: string) => {
      const memory = tenant && (sent.get(tenant.organization, tenant.namespace, externalId) as { version: number; written_by: string } | undefined);
      if (!memory) return undefined;
      const at = memory.written_by.lastIndexOf(':');
      const last = delivery.get(memory.written_by.slice(0, at), Number(memory.written_by.slice(at + 1))) as
        | { attributes: string | null; sink_id: string | null }
        | undefined;
      return { version: memory.version, last };
    };
    return rows.map((r) => {
      let { attributes, sink_id: sinkId } = r;
      let version = 1;
      const memory = r.external_id === null ? undefined : memoryNow(r.external_id);
      if (memory) {
        version = memory.version;
        if (memory.last) attributes = memory.last.attributes;
        if (!r.sent) sinkId = memory.last?.sink_id ?? null;
      }
      return {
        memoryId: r.memory_id,
        batchKey,
        index: r.idx,
        externalId: r.external_id,
        attributes: attributes === null ? null : (JSON.parse(attributes) as MemoryAttributes),
        sinkId,
        outcome: r.outcome,
        version,
      };
    });
  }

  check(): void {
    this.#db.prepare('SELECT 1').get();
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
