// A running batch's counts add up on every read: while the embedded server (SQLite, processing on its own thread)
// works through a batch, status reads from the HTTP thread, as fast as a few clients can make them, always show
// `created + updated + unchanged == succeeded`. The write outcomes are counted by the ledger in the same step as
// `succeeded` (BatchRepository.recordSegment); when they came from the memory sink, which is written a moment before
// the ledger counts a segment, reads falling between the two showed the outcomes a segment ahead.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, type BatchJson, memory, ndjsonStream } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const total = 30_000;
/** Status readers at once, each reading again as soon as its answer came. */
const readers = 4;
/** The reads stop here even if the batch still runs (it takes a few seconds on a loaded machine). */
const readForMs = 20_000;

interface Read {
  status: string;
  succeeded: number;
  written: number;
}

describe('counts of a running batch read while it runs', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let api: ApiClient;

  beforeAll(async () => {
    // Small segments, several at once: many segment records, each a chance for a read to fall before it.
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_SEGMENT_MAX_ITEMS: '250', BATCHMEM_SEGMENT_CONCURRENCY: '4' });
    await server.start();
    api = apiClient(server.url, keys[0]!.key);
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it(`every status read of a ${total.toLocaleString('en')}-memory batch shows created + updated + unchanged = succeeded`, async () => {
    // A first batch stores half the external ids, so the second one both creates and updates (and leaves unchanged).
    const seed = await api.submitNdjson(ndjsonStream(total / 2, (i) => memory(i, 'first')), '?batch_id=seed');
    expect(seed.status).toBe(202);
    expect((await api.waitForFinal('seed')).status).toBe('completed');

    const id = 'read-while-running';
    // Even indexes of the first half repeat the seed's memories exactly (unchanged), odd ones change them (updated).
    const response = await api.submitNdjson(ndjsonStream(total, (i) => memory(i, i < total / 2 && i % 2 === 0 ? 'first' : 'second')), `?batch_id=${id}`);
    expect(response.status).toBe(202);

    const reads: Read[] = [];
    const stopAt = Date.now() + readForMs;
    let final: BatchJson | undefined;
    await Promise.all(Array.from({ length: readers }, async () => {
      while (!final && Date.now() < stopAt) {
        const batch = await api.get(id);
        const { succeeded, created, updated, unchanged } = batch.request_counts;
        reads.push({ status: batch.status, succeeded, written: created + updated + unchanged });
        if (batch.status === 'completed' || batch.status === 'failed') final = batch;
      }
    }));
    const running = reads.filter((r) => r.status === 'processing' && r.succeeded > 0 && r.succeeded < total);
    console.info(`[running counts] ${reads.length} reads, ${running.length} of them while the batch ran, ${new Set(running.map((r) => r.succeeded)).size} distinct succeeded counts`);
    // The reads did see the batch running, at many points of its progress.
    expect(new Set(running.map((r) => r.succeeded)).size).toBeGreaterThanOrEqual(10);
    expect(reads.filter((r) => r.written !== r.succeeded)).toEqual([]);

    const done = final ?? (await api.waitForFinal(id));
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ succeeded: total, created: total / 2, updated: total / 4, unchanged: total / 4 });
  });
});
