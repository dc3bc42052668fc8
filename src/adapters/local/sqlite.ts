// Opens an embedded SQLite database (node:sqlite) tuned for one writer process with concurrent readers.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { emptyWriteCounts, type WriteCounts, writeOutcome, type WriteOutcomeName, writeOutcomes } from '../../domain/progress.ts';

/**
 * How long a write waits for another connection's lock. node:sqlite waits synchronously, freezing the whole
 * process, so the driver's own wait is kept short and the rest of the wait happens here, between event-loop turns.
 */
const lockWaitMs = 10_000;
const driverBusyTimeoutMs = 50;

export function openDatabase(path: string, schema: string): DatabaseSync {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  // The busy timeout comes first: switching to WAL takes a lock, and an API and a worker process opening the same
  // fresh file at once would otherwise fail with "database is locked" instead of waiting their turn.
  // Opening may race another process creating the same file; it is rare and brief, so wait synchronously here.
  db.exec('PRAGMA busy_timeout = 10000');
  db.exec(`
    PRAGMA busy_timeout = ${driverBusyTimeoutMs};
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA foreign_keys = ON;
  `);
  db.exec(schema);
  db.exec(`PRAGMA busy_timeout = ${driverBusyTimeoutMs}`);
  return db;
}

function isBusy(error: unknown): boolean {
  const code = (error as { errcode?: number }).errcode;
  // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with or without extended codes.
  return code !== undefined ? [5, 6].includes(code & 0xff) : /database (table )?is locked/.test(String(error));
}

/** Runs a synchronous write, retrying it while another connection holds the lock, for up to `lockWaitMs`. */
export async function whenUnlocked<T>(work: () => T): Promise<T> {
  const deadline = Date.now() + lockWaitMs;
  for (let pause = 10; ; pause = Math.min(200, pause * 2)) {
    try {
      return work();
    } catch (error) {
      if (!isBusy(error) || Date.now() >= deadline) throw error;
      await sleep(pause);
    }
  }
}

/**
 * Adds the columns `table` lacks (`[name, type]`, the type with any default), for a database written by an earlier
 * version: existing rows get the default, or NULL without one. Idempotent, and safe against another process adding
 * the same column at once. Names and types are the caller's constants, never input.
 */
export function addMissingColumns(db: DatabaseSync, table: string, columns: readonly (readonly [string, string])[]): void {
  const existing = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
  for (const [name, type] of columns) {
    if (existing.has(name)) continue;
    try {
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${name} ${type}`);
    } catch (error) {
      // Another process added it between the look and the change.
      if (!/duplicate column/.test(String(error))) throw error;
    }
  }
}

/** Runs `work` in one IMMEDIATE transaction (write lock taken up front, so no upgrade deadlock). */
export function inTransaction<T>(db: DatabaseSync, work: () => T): Promise<T> {
  return whenUnlocked(() => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      db.exec('COMMIT');
      return result;
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  });
}

/**
 * Creates `table` (batch_key, idx, memory_id, outcome): what each batch item's write did, kept once per item so a
 * repeated write reports its first outcome. When the table is new, every row already in `writtenFrom` (which has
 * batch_key, idx and memory_id columns) is recorded as `created`: those writes happened before outcomes were kept.
 * Table names are the caller's constants, never input.
 */
export function ensureWriteOutcomeTable(db: DatabaseSync, table: string, writtenFrom: string): void {
  const existed = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table);
  db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
             batch_key TEXT NOT NULL,
             idx INTEGER NOT NULL,
             memory_id TEXT NOT NULL,
             outcome TEXT NOT NULL,
             PRIMARY KEY (batch_key, idx)
           ) WITHOUT ROWID`);
  if (!existed) {
    db.exec(`INSERT OR IGNORE INTO ${table} (batch_key, idx, memory_id, outcome)
             SELECT batch_key, idx, memory_id, '${writeOutcome.created}' FROM ${writtenFrom}`);
  }
}

/** A batch's items per write outcome, read from a table made by `ensureWriteOutcomeTable`; unknown outcomes are left out. */
export function writeCountsOf(db: DatabaseSync, table: string, batchKey: string): WriteCounts {
  const rows = db.prepare(`SELECT outcome, count(*) AS n FROM ${table} WHERE batch_key = ? GROUP BY outcome`).all(batchKey) as {
    outcome: string;
    n: number;
  }[];
  const counts = emptyWriteCounts();
  for (const row of rows) if ((writeOutcomes as string[]).includes(row.outcome)) counts[row.outcome as WriteOutcomeName] = row.n;
  return counts;
}
