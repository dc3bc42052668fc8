// Opens an embedded SQLite database (node:sqlite) tuned for one writer process with concurrent readers.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';

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
