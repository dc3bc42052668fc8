// Re-importing the same export is exactly once across batches: upsert by external id on embedded defaults.
// 100,000 memories with external ids, then the same file again (0 new memories, all unchanged), then with 1% of the
// contents changed (exactly those updated); the sink holds one memory per external id throughout. Two batches with
// overlapping external ids submitted at once end with one memory per id. The default pass imports 20,000 memories
// three times (about 25 s on two cores); `npm run test:soak` the 100,000 of issue 16 (about 2 minutes).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type BatchJson, memory, ndjsonStream } from '../support/api-client.ts';
import { memoryRowCount } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const soak = process.env.BATCHMEM_SOAK === '1';
const total = Number(process.env.BATCHMEM_REIMPORT_MEMORIES ?? (soak ? 100_000 : 20_000));
const changedEvery = 100; // 1% of the contents change in the third import

type Counts = BatchJson['request_counts'] & { created: number; updated: number; unchanged: number };

describe(`re-import of ${total.toLocaleString('en')} memories with external ids on embedded defaults`, () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let client: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_MAX_MEMORIES: String(total) });
    await server.start();
    client = apiClient(server.url, keys[0]!.key);
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  async function importFile(id: string, make: (i: number) => unknown, count = total): Promise<Counts> {
    const response = await client.submitNdjson(ndjsonStream(count, make), `?batch_id=${id}`);
    expect(response.status, await response.clone().text()).toBe(202);
    const batch = await client.waitForFinal(id, 300_000);
    expect(batch.status).toBe('completed');
    return batch.request_counts as Counts;
  }

  it('stores each external id once: created, then all unchanged, then exactly the changed ones updated', async () => {
    const first = await importFile('import-1', (i) => memory(i));
    expect(first).toMatchObject({ total, succeeded: total, failed: 0, created: total, updated: 0, unchanged: 0 });
    expect(memoryRowCount(dir.path)).toBe(total);

    const again = await importFile('import-2', (i) => memory(i));
    expect(again).toMatchObject({ total, succeeded: total, failed: 0, created: 0, updated: 0, unchanged: total });
    expect(memoryRowCount(dir.path)).toBe(total);

    const changed = Math.ceil(total / changedEvery);
    const third = await importFile('import-3', (i) => (i % changedEvery === 0 ? memory(i, 'edited memory') : memory(i)));
    expect(third).toMatchObject({ total, succeeded: total, failed: 0, created: 0, updated: changed, unchanged: total - changed });
    expect(memoryRowCount(dir.path)).toBe(total);

    // The results name the same memory for an external id in every import, with the version it has now.
    const firstPage = await (await client.request('/v1/batch/import-1/results?limit=200')).json() as { data: { external_id: string; memory_id: string }[] };
    const thirdPage = await (await client.request('/v1/batch/import-3/results?limit=200')).json() as {
      data: { index: number; external_id: string; memory_id: string; outcome: string; version: number }[];
    };
    expect(thirdPage.data.map((r) => r.memory_id)).toEqual(firstPage.data.map((r) => r.memory_id));
    for (const result of thirdPage.data) {
      expect([result.outcome, result.version]).toEqual(result.index % changedEvery === 0 ? ['updated', 2] : ['unchanged', 1]);
    }
  }, 900_000);

  it('ends two overlapping batches submitted at once with one memory per external id', async () => {
    const before = memoryRowCount(dir.path);
    const size = Math.min(total, 6000);
    const overlap = size / 2;
    const item = (n: number, version: string) => ({ content: `overlap ${n} from ${version}`, external_id: `overlap-${n}` });
    const [left, right] = await Promise.all([
      importFile('overlap-left', (i) => item(i, 'left'), size),
      importFile('overlap-right', (i) => item(i + overlap, 'right'), size),
    ]);
    expect(memoryRowCount(dir.path) - before).toBe(size + overlap);
    // Each shared id was created by one batch and updated (its content differs) by the other.
    expect(left.created + right.created).toBe(size + overlap);
    expect(left.updated + right.updated).toBe(overlap);
    expect(left.succeeded + right.succeeded).toBe(2 * size);
  }, 300_000);
});
