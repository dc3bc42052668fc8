// The results file of a large batch: one request downloads every item's outcome while the API's resident set stays
// flat (under the 256 MiB of the ingest target), and the gzip and resumed (Range, from_index) downloads give exactly
// the same lines. The default pass uses 100,000 memories; `npm run test:soak` uses 1,000,000.
//
// The batch is written straight into the embedded stores by their own adapters (the outcome of a processed batch:
// its record, its ledger, its item errors and its memories), so the test spends its time on the download.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { SqliteMemorySink } from '../../src/adapters/local/memory-sink.ts';
import { writeCountsOfOutcomes } from '../../src/domain/progress.ts';
import { finish } from '../../src/domain/lifecycle.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { apiClient, type ApiClient } from '../support/api-client.ts';
import { newBatch } from '../support/batches.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const soak = process.env.BATCHMEM_SOAK === '1';
const total = Number(process.env.BATCHMEM_RESULTS_MEMORIES ?? (soak ? 1_000_000 : 100_000));
const segmentItems = 1000;
/** Every item whose index ends in 999 was rejected by the sink: the file merges both sources. */
const failedIndex = (index: number) => index % 1000 === 999;
const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

function procMemory(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { peak: kib('VmHWM'), rss: kib('VmRSS') };
}

/** Reads a body line by line without keeping it: counts, the set of memory ids, a SHA-256 of the bytes. */
async function consume(body: ReadableStream<Uint8Array>, onLine?: (line: string) => void) {
  const hash = createHash('sha256');
  const decoder = new TextDecoder();
  let pending = '';
  let bytes = 0;
  let lines = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    bytes += chunk.byteLength;
    pending += decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      lines += 1;
      onLine?.(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
  }
  expect(pending).toBe('');
  return { bytes, lines, sha256: hash.digest('hex') };
}

describe(`results file of a ${total.toLocaleString('en')}-memory batch`, () => {
  const keys = testKeys();
  const tenant = { organization: keys[0]!.organization, namespace: keys[0]!.namespace, user: keys[0]!.user, workspace: keys[0]!.workspace };
  const dir = tempDir();
  const id = 'large-results';
  let server: ServerProcess;
  let api: ApiClient;
  let pid: number;
  let plain: { bytes: number; lines: number; sha256: string };
  const peaks: Record<string, number> = {};

  beforeAll(async () => {
    const seededAt = performance.now();
    const batches = new SqliteBatchRepository(join(dir.path, 'batchmem.db'));
    const sink = new SqliteMemorySink(join(dir.path, 'memories.db'));
    const batch = newBatch({ id, tenant, status: 'processing', counts: { total, processed: 0, succeeded: 0, failed: 0 } });
    batch.payload.segments = Math.ceil(total / segmentItems);
    await batches.create(batch);
    for (let segment = 0; segment * segmentItems < total; segment += 1) {
      const first = segment * segmentItems;
      const indexes = Array.from({ length: Math.min(segmentItems, total - first) }, (_, i) => first + i);
      const stored = indexes.filter((i) => !failedIndex(i));
      const outcomes = await sink.writeSegment(stored.map((i) => toMemoryRecord(batch.key, tenant, i, { content: `memory ${i}`, external_id: `ext-${i}` })));
      const written = writeCountsOfOutcomes(outcomes.flatMap((o) => (o.ok ? [o.outcome] : [])));
      const errors = indexes.filter(failedIndex).map((i) => ({ index: i, externalId: `ext-${i}`, error: 'rejected by the memory store' }));
      await batches.recordSegment(batch.key, { segment, succeeded: stored.length, failed: errors.length, written }, errors, 'seed');
    }
    const current = (await batches.get(batch.key))!;
    const done = finish(current, new Date().toISOString());
    if (!done.ok) throw new Error('could not finish the seeded batch');
    await batches.update(batch.key, current.version, done.value);
    await batches.close();
    await sink.close();
    console.info(`[results file] seeded ${total} memories in ${((performance.now() - seededAt) / 1000).toFixed(1)} s`);

    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path });
    await server.start();
    api = apiClient(server.url, keys[0]!.key);
    pid = server.pid()!;
    expect((await api.get(id)).status).toBe('completed');
  });

  afterAll(async () => {
    console.info(`[results file] ${total} memories: ${JSON.stringify(Object.fromEntries(Object.entries(peaks).map(([k, v]) => [k, `${mib(v)} MiB`])))}`);
    await server?.stop();
    dir.remove();
  });

  it('downloads every outcome in one request, each memory id once, with the API staying under 256 MiB', async () => {
    peaks.idleRss = procMemory(pid).rss;
    let nextIndex = 0;
    let succeeded = 0;
    let failed = 0;
    let misplaced = 0;
    const memoryIds = new Set<string>();
    const startedAt = performance.now();
    const response = await api.request(`/v1/batch/${id}/results.ndjson`);
    expect(response.status).toBe(200);
    let maxRss = 0;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, procMemory(pid).rss)), 100);
    try {
      // Plain comparisons per line (an expect per line would cost more than the download); the tally is checked below.
      plain = await consume(response.body!, (text) => {
        const line = JSON.parse(text) as { index: number; outcome: string; memory_id: string | null; external_id: string };
        if (line.index !== nextIndex || line.external_id !== `ext-${nextIndex}`) misplaced += 1;
        if (failedIndex(line.index) ? line.outcome !== 'failed' || line.memory_id !== null : line.outcome !== 'succeeded') misplaced += 1;
        if (line.outcome === 'failed') failed += 1;
        if (line.outcome === 'succeeded') {
          memoryIds.add(line.memory_id!);
          succeeded += 1;
        }
        nextIndex += 1;
      });
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - startedAt) / 1000;
    peaks.downloadMaxRss = maxRss;
    peaks.processPeak = procMemory(pid).peak;
    console.info(`[results file] ${plain.lines} lines, ${mib(plain.bytes)} MiB in ${seconds.toFixed(1)} s (${Math.round(plain.lines / seconds)} lines/s)`);
    expect(plain.lines).toBe(total);
    expect(misplaced).toBe(0);
    expect(memoryIds.size).toBe(succeeded);
    expect(succeeded + failed).toBe(total);
    expect(failed).toBe(Math.floor(total / 1000));
    // VmHWM covers the process's whole life: start, and the download.
    expect(peaks.processPeak).toBeLessThan(256 * 1024 * 1024);
  });

  it('gives the same bytes gzip-compressed', async () => {
    // node:http, not fetch: fetch would decode the gzip itself and hide what went over the wire.
    const raw = await new Promise<IncomingMessage>((resolve, reject) =>
      httpGet(`${server.url}/v1/batch/${id}/results.ndjson`, { headers: { authorization: `Bearer ${keys[0]!.key}`, 'accept-encoding': 'gzip' } }, resolve).on('error', reject),
    );
    expect(raw.headers['content-encoding']).toBe('gzip');
    let compressedBytes = 0;
    raw.on('data', (chunk: Buffer) => (compressedBytes += chunk.byteLength));
    const unzipped = await consume(Readable.toWeb(raw.pipe(createGunzip())) as ReadableStream<Uint8Array>);
    expect(unzipped).toEqual(plain);
    peaks.processPeak = procMemory(pid).peak;
    console.info(`[results file] gzip: ${mib(compressedBytes)} MiB on the wire for ${mib(plain.bytes)} MiB`);
    expect(compressedBytes).toBeLessThan(plain.bytes / 3);
    expect(peaks.processPeak).toBeLessThan(256 * 1024 * 1024);
  });

  it('resumes by byte range and by index to exactly the same file', async () => {
    const head = await api.request(`/v1/batch/${id}/results.ndjson`);
    const tag = head.headers.get('etag')!;
    await head.body!.cancel();
    const cut = Math.floor(plain.bytes / 2) + 7; // inside a line
    const first = await api.request(`/v1/batch/${id}/results.ndjson`, { headers: { range: `bytes=0-${cut - 1}` } });
    const rest = await api.request(`/v1/batch/${id}/results.ndjson`, { headers: { range: `bytes=${cut}-`, 'if-range': tag } });
    expect([first.status, rest.status]).toEqual([206, 206]);
    expect(rest.headers.get('content-range')).toBe(`bytes ${cut}-${plain.bytes - 1}/${plain.bytes}`);
    const hash = createHash('sha256');
    hash.update(Buffer.from(await first.arrayBuffer()));
    for await (const chunk of rest.body! as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
    expect(hash.digest('hex')).toBe(plain.sha256);

    const from = Math.floor(total * 0.75);
    let expected = from;
    let outOfOrder = 0;
    const tail = await consume((await api.request(`/v1/batch/${id}/results.ndjson?from_index=${from}`)).body!, (text) => {
      if ((JSON.parse(text) as { index: number }).index !== expected) outOfOrder += 1;
      expected += 1;
    });
    expect(outOfOrder).toBe(0);
    expect(tail.lines).toBe(total - from);
    peaks.processPeak = procMemory(pid).peak;
    expect(peaks.processPeak).toBeLessThan(256 * 1024 * 1024);
  });
});
