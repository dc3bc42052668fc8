// BatchRepository on SQLite: one row per batch (counters in columns, the rest as JSON), one per recorded segment.
import type { DatabaseSync } from 'node:sqlite';
import type { Batch, BatchStatus } from '../../domain/batch.ts';
import { applyPatch, finalStatuses, type IllegalTransition, isFinal, unfinishedStatuses } from '../../domain/lifecycle.ts';
import {
  addOutcome,
  addRecovered,
  addWriteCounts,
  checkSegmentOutcome,
  type Counts,
  type SegmentOutcome,
  type WriteCounts,
  writeCountsOfOutcomes,
} from '../../domain/progress.ts';
import {
  type Backlog,
  type BatchListQuery,
  type BatchPatch,
  type BatchRepository,
  type ExpiredPayload,
  InvalidCursorError,
  type ItemError,
  type Page,
  type RedriveOutcome,
  type SegmentRecord,
} from '../../ports/batch-repository.ts';
import { addMissingColumns, inTransaction, openDatabase, whenUnlocked } from './sqlite.ts';

const schema = `
CREATE TABLE IF NOT EXISTS batches (
  key TEXT PRIMARY KEY,
  organization TEXT NOT NULL,
  status TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  total INTEGER NOT NULL,
  processed INTEGER NOT NULL DEFAULT 0,
  succeeded INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  record TEXT NOT NULL,
  created INTEGER,
  updated INTEGER,
  unchanged INTEGER
);
CREATE INDEX IF NOT EXISTS batches_by_org ON batches (organization, created_at DESC, key DESC);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status);
CREATE INDEX IF NOT EXISTS batches_by_payload_prefix ON batches (json_extract(record, '$.payload.prefix'));
CREATE TABLE IF NOT EXISTS segments (
  batch_key TEXT NOT NULL,
  segment INTEGER NOT NULL,
  succeeded INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  created INTEGER NOT NULL DEFAULT 0,
  updated INTEGER NOT NULL DEFAULT 0,
  unchanged INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (batch_key, segment)
);
CREATE TABLE IF NOT EXISTS segment_redrives (
  batch_key TEXT NOT NULL,
  redrive INTEGER NOT NULL,
  segment INTEGER NOT NULL,
  recovered INTEGER NOT NULL,
  failed_again INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  PRIMARY KEY (batch_key, redrive, segment)
);
CREATE TABLE IF NOT EXISTS payload_expiry (
  batch_key TEXT PRIMARY KEY,
  expired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS item_errors (
  batch_key TEXT NOT NULL,
  idx INTEGER NOT NULL,
  external_id TEXT,
  error TEXT NOT NULL,
  PRIMARY KEY (batch_key, idx)
);
`;

/**
 * Upgrades a database of an earlier version in place. The batches' write outcome counters are added without a
 * default: a batch stored before them reads `written: null` (its outcomes are in the memory sink only), and stays
 * so, since NULL plus a count is NULL. Segments recorded before them read as having recorded no outcomes.
 */
function migrate(db: DatabaseSync): void {
  addMissingColumns(db, 'batches', [['created', 'INTEGER'], ['updated', 'INTEGER'], ['unchanged', 'INTEGER']]);
  addMissingColumns(db, 'segments', [
    ['created', 'INTEGER NOT NULL DEFAULT 0'],
    ['updated', 'INTEGER NOT NULL DEFAULT 0'],
    ['unchanged', 'INTEGER NOT NULL DEFAULT 0'],
  ]);
}

interface BatchRow {
  key: string;
  status: string;
  version: number;
  total: number;
  processed: number;
  succeeded: number;
  failed: number;
  record: string;
  created_at: string;
  created: number | null;
  updated: number | null;
  unchanged: number | null;
}

function toBatch(row: BatchRow): Batch {
  const stored = JSON.parse(row.record) as Omit<Batch, 'status' | 'version' | 'counts'>;
  return {
    ...stored,
    // Records written before completion windows and metadata existed have neither.
    completionWindow: stored.completionWindow ?? null,
    expiresAt: stored.expiresAt ?? null,
    metadata: stored.metadata ?? {},
    status: row.status as BatchStatus,
    version: row.version,
    counts: { total: row.total, processed: row.processed, succeeded: row.succeeded, failed: row.failed },
    written: row.created === null || row.updated === null || row.unchanged === null
      ? null
      : { created: row.created, updated: row.updated, unchanged: row.unchanged },
  };
}

function recordJson(batch: Batch): string {
  const { status: _status, version: _version, counts: _counts, written: _written, ...rest } = batch;
  return JSON.stringify(rest);
}

/** `?, ?, ?` for an IN list of these values. */
function placeholders(values: readonly unknown[]): string {
  return values.map(() => '?').join(', ');
}

function encodeCursor(row: { created_at: string; key: string }): string {
  return Buffer.from(JSON.stringify([row.created_at, row.key])).toString('base64url');
}

function decodeCursor(cursor: string): [string, string] | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    return Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')
      ? (value as [string, string])
      : undefined;
  } catch {
    return undefined;
  }
}

export class SqliteBatchRepository implements BatchRepository {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, schema);
    migrate(this.#db);
  }

  async create(batch: Batch): Promise<{ created: boolean; batch: Batch }> {
    const inserted = await whenUnlocked(() => this.#db
      .prepare(
        `INSERT INTO batches (key, organization, status, version, created_at, total, processed, succeeded, failed, record,
                              created, updated, unchanged)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`,
      )
      .run(
        batch.key,
        batch.tenant.organization,
        batch.status,
        batch.version,
        batch.createdAt,
        batch.counts.total,
        batch.counts.processed,
        batch.counts.succeeded,
        batch.counts.failed,
        recordJson(batch),
        batch.written?.created ?? null,
        batch.written?.updated ?? null,
        batch.written?.unchanged ?? null,
      ));
    const stored = await this.get(batch.key);
    if (!stored) throw new Error(`batch ${batch.key} vanished after insert`);
    return { created: inserted.changes === 1, batch: stored };
  }

  async get(key: string): Promise<Batch | undefined> {
    const row = this.#db.prepare('SELECT * FROM batches WHERE key = ?').get(key) as BatchRow | undefined;
    return row ? toBatch(row) : undefined;
  }

  async update(key: string, expectedVersion: number, patch: BatchPatch): Promise<Batch | 'conflict' | IllegalTransition> {
    return inTransaction(this.#db, () => {
      const row = this.#db.prepare('SELECT * FROM batches WHERE key = ?').get(key) as BatchRow | undefined;
      if (!row || row.version !== expectedVersion) return 'conflict';
      const applied = applyPatch(toBatch(row), patch);
      if (!applied.ok) return applied.error;
      const next = applied.value;
      this.#db
        .prepare('UPDATE batches SET status = ?, version = ?, total = ?, record = ? WHERE key = ? AND version = ?')
        .run(next.status, next.version, next.counts.total, recordJson(next), key, expectedVersion);
      return next;
    });
  }

  async recordSegment(
    key: string,
    outcome: SegmentOutcome,
    itemErrors: ItemError[],
    workerId: string,
  ): Promise<{ applied: boolean; counts: Counts }> {
    checkSegmentOutcome(outcome);
    return inTransaction(this.#db, () => {
      const row = this.#db.prepare('SELECT * FROM batches WHERE key = ?').get(key) as BatchRow | undefined;
      if (!row) throw new Error(`batch ${key} does not exist`);
      const { counts, written } = toBatch(row);
      // Too late: the batch ended (it expired) while this segment ran. A final batch's counts stay as they ended.
      if (isFinal(row.status as BatchStatus)) return { applied: false, counts };
      const inserted = this.#db
        .prepare(
          `INSERT INTO segments (batch_key, segment, succeeded, failed, worker_id, recorded_at, created, updated, unchanged)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        )
        .run(
          key,
          outcome.segment,
          outcome.succeeded,
          outcome.failed,
          workerId,
          new Date().toISOString(),
          outcome.written.created,
          outcome.written.updated,
          outcome.written.unchanged,
        );
      if (inserted.changes === 0) return { applied: false, counts };
      const insertError = this.#db.prepare(
        'INSERT INTO item_errors (batch_key, idx, external_id, error) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
      );
      for (const item of itemErrors) insertError.run(key, item.index, item.externalId, item.error);
      const next = addOutcome(counts, outcome);
      this.#db
        .prepare('UPDATE batches SET processed = ?, succeeded = ?, failed = ? WHERE key = ?')
        .run(next.processed, next.succeeded, next.failed, key);
      this.#addWritten(key, written, outcome.written);
      return { applied: true, counts: next };
    });
  }

  async recordRedrive(key: string, outcome: RedriveOutcome, workerId: string): Promise<{ applied: boolean; counts: Counts }> {
    return inTransaction(this.#db, () => {
      const row = this.#db.prepare('SELECT * FROM batches WHERE key = ?').get(key) as BatchRow | undefined;
      if (!row) throw new Error(`batch ${key} does not exist`);
      const { counts, written } = toBatch(row);
      if (isFinal(row.status as BatchStatus)) return { applied: false, counts };
      const inserted = this.#db
        .prepare(
          `INSERT INTO segment_redrives (batch_key, redrive, segment, recovered, failed_again, worker_id, recorded_at)
           VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT DO NOTHING`,
        )
        .run(key, outcome.redrive, outcome.segment, outcome.failedAgain.length, workerId, new Date().toISOString());
      if (inserted.changes === 0) return { applied: false, counts };
      // Counted by the errors actually removed: an index that had none (never failed) moves nothing.
      const removeError = this.#db.prepare('DELETE FROM item_errors WHERE batch_key = ? AND idx = ?');
      const moved = outcome.recovered.filter((item) => Number(removeError.run(key, item.index).changes) > 0);
      const recovered = moved.length;
      const updateError = this.#db.prepare('UPDATE item_errors SET error = ? WHERE batch_key = ? AND idx = ?');
      for (const item of outcome.failedAgain) updateError.run(item.error, key, item.index);
      this.#db
        .prepare('UPDATE segment_redrives SET recovered = ? WHERE batch_key = ? AND redrive = ? AND segment = ?')
        .run(recovered, key, outcome.redrive, outcome.segment);
      const next = addRecovered(counts, recovered);
      this.#db.prepare('UPDATE batches SET succeeded = ?, failed = ? WHERE key = ?').run(next.succeeded, next.failed, key);
      this.#addWritten(key, written, writeCountsOfOutcomes(moved.map((item) => item.outcome)));
      return { applied: true, counts: next };
    });
  }

  /** Inside a transaction: adds write outcomes to the batch's counters (a batch without them, `null`, keeps none). */
  #addWritten(key: string, written: WriteCounts | null, added: WriteCounts): void {
    if (written === null) return;
    const next = addWriteCounts(written, added);
    this.#db.prepare('UPDATE batches SET created = ?, updated = ?, unchanged = ? WHERE key = ?').run(next.created, next.updated, next.unchanged, key);
  }

  async listRedriveSegments(key: string, redrive: number): Promise<number[]> {
    const rows = this.#db
      .prepare('SELECT segment FROM segment_redrives WHERE batch_key = ? AND redrive = ? ORDER BY segment')
      .all(key, redrive) as { segment: number }[];
    return rows.map((r) => r.segment);
  }

  async listSegments(key: string): Promise<SegmentRecord[]> {
    const rows = this.#db
      .prepare('SELECT segment, succeeded, failed, worker_id, recorded_at, created, updated, unchanged FROM segments WHERE batch_key = ? ORDER BY segment')
      .all(key) as ({ segment: number; succeeded: number; failed: number; worker_id: string; recorded_at: string } & WriteCounts)[];
    return rows.map((r) => ({
      segment: r.segment,
      succeeded: r.succeeded,
      failed: r.failed,
      written: { created: r.created, updated: r.updated, unchanged: r.unchanged },
      workerId: r.worker_id,
      recordedAt: r.recorded_at,
    }));
  }

  async listErrors(key: string, afterIndex: number, limit: number): Promise<ItemError[]> {
    const rows = this.#db
      .prepare('SELECT idx, external_id, error FROM item_errors WHERE batch_key = ? AND idx > ? ORDER BY idx LIMIT ?')
      .all(key, afterIndex, limit) as { idx: number; external_id: string | null; error: string }[];
    return rows.map((r) => ({ index: r.idx, externalId: r.external_id, error: r.error }));
  }

  async list(organization: string, query: BatchListQuery): Promise<Page<Batch>> {
    const where = ['organization = ?'];
    const params: (string | number)[] = [organization];
    if (query.status) {
      where.push('status = ?');
      params.push(query.status);
    }
    for (const [name, value] of Object.entries(query.metadata ?? {})) {
      // The key is bound as a value too (json_extract takes the path as a parameter), so no key reaches the SQL text.
      where.push(`json_extract(record, '$.metadata.' || json_quote(?)) = ?`);
      params.push(name, value);
    }
    if (query.cursor) {
      const after = decodeCursor(query.cursor);
      if (!after) throw new InvalidCursorError('cursor is not valid');
      where.push('(created_at < ? OR (created_at = ? AND key < ?))');
      params.push(after[0], after[0], after[1]);
    }
    const rows = this.#db
      .prepare(`SELECT * FROM batches WHERE ${where.join(' AND ')} ORDER BY created_at DESC, key DESC LIMIT ?`)
      .all(...params, query.limit + 1) as unknown as BatchRow[];
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return { items: page.map(toBatch), nextCursor: rows.length > query.limit && last ? encodeCursor(last) : null };
  }

  async delete(key: string): Promise<boolean> {
    return inTransaction(this.#db, () => {
      const removed = this.#db.prepare('DELETE FROM batches WHERE key = ?').run(key);
      for (const table of ['segments', 'segment_redrives', 'item_errors', 'payload_expiry']) {
        this.#db.prepare(`DELETE FROM ${table} WHERE batch_key = ?`).run(key);
      }
      return removed.changes > 0;
    });
  }

  async listNeedingWork(maxWebhookAttempts: number): Promise<string[]> {
    const unfinished = this.#db
      .prepare(`SELECT key FROM batches WHERE status IN (${placeholders(unfinishedStatuses)}) ORDER BY created_at`)
      .all(...unfinishedStatuses) as { key: string }[];
    const undelivered = this.#db
      .prepare(
        `SELECT key FROM batches WHERE status IN (${placeholders(finalStatuses)})
           AND json_extract(record, '$.webhook.url') IS NOT NULL
           AND json_extract(record, '$.webhook.delivered') = 0
           AND json_extract(record, '$.webhook.attempts') < ?
           AND coalesce(json_extract(record, '$.webhook.gaveUp'), 0) = 0`,
      )
      .all(...finalStatuses, maxWebhookAttempts) as { key: string }[];
    return [...unfinished, ...undelivered].map((r) => r.key);
  }

  async backlog(): Promise<Backlog> {
    const rows = this.#db
      .prepare(`SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM batches WHERE status IN (${placeholders(unfinishedStatuses)}) GROUP BY status`)
      .all(...unfinishedStatuses) as { status: BatchStatus; n: number; oldest: string }[];
    const backlog: Backlog = { byStatus: {}, oldestCreatedAt: null };
    for (const row of rows) {
      backlog.byStatus[row.status] = Number(row.n);
      if (backlog.oldestCreatedAt === null || row.oldest < backlog.oldestCreatedAt) backlog.oldestCreatedAt = row.oldest;
    }
    return backlog;
  }

  async listExpiredPayloads(completedBefore: string, limit: number): Promise<ExpiredPayload[]> {
    return this.#db
      .prepare(
        `SELECT key, json_extract(record, '$.payload.prefix') AS prefix, json_extract(record, '$.completedAt') AS completedAt
           FROM batches
          WHERE status IN (${placeholders(finalStatuses)})
            AND json_extract(record, '$.completedAt') <= ?
            AND NOT EXISTS (SELECT 1 FROM payload_expiry WHERE batch_key = batches.key)
          ORDER BY completedAt, key
          LIMIT ?`,
      )
      .all(...finalStatuses, completedBefore, limit) as unknown as ExpiredPayload[];
  }

  async referencedPrefixes(prefixes: string[]): Promise<Set<string>> {
    if (prefixes.length === 0) return new Set();
    // The same expression as the index batches_by_payload_prefix, so the lookup uses it.
    const rows = this.#db
      .prepare(
        `SELECT DISTINCT json_extract(record, '$.payload.prefix') AS prefix FROM batches
          WHERE json_extract(record, '$.payload.prefix') IN (${placeholders(prefixes)})`,
      )
      .all(...prefixes) as Array<{ prefix: string }>;
    return new Set(rows.map((row) => row.prefix));
  }

  async markPayloadExpired(key: string, expiredAt: string): Promise<void> {
    await whenUnlocked(() =>
      this.#db.prepare('INSERT INTO payload_expiry (batch_key, expired_at) VALUES (?, ?) ON CONFLICT DO NOTHING').run(key, expiredAt),
    );
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
