// Looks inside an embedded-defaults data folder from the test (read-only), and reads the server's own metrics:
// how many payload files exist, how many memories the SQLite sink holds per batch, how many 5xx answers were given.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { batchKey } from '../../src/domain/batch.ts';

/** Files under the data folder's payloads directory (segments and their checksum sidecars). */
export function payloadFileCount(dataDir: string): number {
  const root = join(dataDir, 'payloads');
  if (!existsSync(root)) return 0;
  return readdirSync(root, { withFileTypes: true, recursive: true }).filter((entry) => entry.isFile()).length;
}

export interface StoredMemories {
  /** Rows in the sink for the batch. */
  rows: number;
  /** Distinct item indexes among them; rows > distinct would mean a memory stored twice. */
  distinctIndexes: number;
  /** Distinct memory ids among them. */
  distinctIds: number;
}

function withSink<T>(dataDir: string, read: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(join(dataDir, 'memories.db'), { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 10000');
    return read(db);
  } finally {
    db.close();
  }
}

/**
 * What the SQLite memory sink holds for one batch of one organization: the items it wrote (`memory_writes`, one row
 * per index; with upsert by external id an item may write a memory another batch created).
 */
export function storedMemories(dataDir: string, organization: string, batchId: string): StoredMemories {
  return withSink(dataDir, (db) => {
    const row = db
      .prepare('SELECT COUNT(*) AS rows, COUNT(DISTINCT idx) AS distinctIndexes, COUNT(DISTINCT memory_id) AS distinctIds FROM memory_writes WHERE batch_key = ?')
      .get(batchKey(organization, batchId)) as unknown as StoredMemories;
    return { rows: Number(row.rows), distinctIndexes: Number(row.distinctIndexes), distinctIds: Number(row.distinctIds) };
  });
}

/** Every memory row in the sink, across batches and tenants. */
export function memoryRowCount(dataDir: string): number {
  if (!existsSync(join(dataDir, 'memories.db'))) return 0;
  return withSink(dataDir, (db) => Number((db.prepare('SELECT COUNT(*) AS n FROM memories').get() as { n: number }).n));
}

/** Requests the server answered with a 5xx, by route, from its Prometheus metrics. */
export async function serverErrorCounts(baseUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^batchmem_http_request_duration_seconds_count\{(.*)\} (\d+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels.status?.startsWith('5')) counts[`${labels.method} ${labels.route} ${labels.status}`] = Number(match[2]);
  }
  return counts;
}

/** The organizations the sink recorded on the memories of one batch (must be the batch's own, only). */
export function memoryOrganizations(dataDir: string, organization: string, batchId: string): string[] {
  return withSink(dataDir, (db) =>
    (db.prepare('SELECT DISTINCT m.organization FROM memory_writes w JOIN memories m ON m.memory_id = w.memory_id WHERE w.batch_key = ? ORDER BY m.organization').all(batchKey(organization, batchId)) as { organization: string }[]).map(
      (row) => row.organization,
    ),
  );
}
