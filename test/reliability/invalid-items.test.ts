// `invalid_items: "record"` on embedded defaults: invalid lines become per-item failures naming their line, the rest
// are stored, and processing overlaps the upload. The client streams its body and, part-way, holds the rest back
// until the batch resource shows processed items while its upload is still open: the overlap is observed, not
// inferred from timings. A client that disconnects mid-upload leaves a cancelled batch with its processed items kept.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, memory } from '../support/api-client.ts';
import { gate, heldBody, type StreamedBatch, waitForStreamed } from '../support/streamed-upload.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const lines = 100_000;
// 37 invalid lines spread through the file (1-based line numbers), each broken in a different way.
const badLines = Array.from({ length: 37 }, (_, k) => 1 + Math.floor(((k + 0.5) * lines) / 37));
const breakages: ((i: number) => string)[] = [
  () => '{"content": "cut off',
  (i) => JSON.stringify({ type: 'note', external_id: `ext-${i}` }),
  (i) => JSON.stringify({ content: 42, external_id: `ext-${i}` }),
  (i) => JSON.stringify({ content: 'unknown field', colour: 'red', external_id: `ext-${i}` }),
];

describe('invalid_items: record on embedded defaults', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let client: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_MAX_MEMORIES: String(lines) });
    await server.start();
    client = apiClient(server.url, keys[0]!.key);
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('stores 99,963 of 100,000 lines, fails the 37 invalid ones with their line numbers, and processes while the upload streams', async () => {
    const bad = new Map(badLines.map((line, k) => [line, breakages[k % breakages.length]!]));
    const line = (i: number) => bad.get(i + 1)?.(i) ?? JSON.stringify(memory(i));
    const { opened: released, open: release } = gate();
    const submitted = client.submitNdjson(heldBody(lines, line, 30_000, released), '?batch_id=record-100k&invalid_items=record');
    submitted.catch(() => undefined); // awaited below; a failure there is the test's

    // The body is held back after 30,000 lines: the batch must be processing what it has while the upload is open.
    let during: StreamedBatch;
    try {
      during = await waitForStreamed(client, 'record-100k', (batch) => batch.request_counts.processed > 0, 60_000);
    } finally {
      release();
    }
    expect(during.upload.complete).toBe(false);
    expect(during.upload.received).toBeLessThanOrEqual(30_000);
    expect(during.request_counts.total).toBe(during.upload.received);
    expect(during.status).toBe('processing');
    expect(during.invalid_items).toBe('record');

    const response = await submitted;
    expect(response.status, await response.clone().text()).toBe(202);
    const final = (await client.waitForFinal('record-100k', 120_000)) as StreamedBatch;
    expect(final.status).toBe('completed');
    expect(final.upload).toEqual({ complete: true, received: lines });
    expect(final.request_counts).toMatchObject({ total: lines, processed: lines, succeeded: lines - 37, failed: 37, created: lines - 37 });

    const errors = await client.all<{ index: number; external_id: string | null; error: string }>('/v1/batch/record-100k/errors');
    expect(errors.map((e) => e.index)).toEqual(badLines.map((line) => line - 1));
    for (const [k, error] of errors.entries()) {
      expect(error.error).toMatch(new RegExp(`^line ${badLines[k]} is invalid: `));
      // The external id is kept when it could be read (every breakage but the cut-off JSON has one).
      expect(error.external_id).toBe(k % breakages.length === 0 ? null : `ext-${badLines[k]! - 1}`);
    }
    expect(errors[1]!.error).toContain('content');
    expect(errors[3]!.error).toMatch(/colour|unrecognized/i);
  }, 180_000);

  it('cancels a batch whose client disconnects mid-upload, keeping the items it processed', async () => {
    const { opened: released, open: release } = gate();
    const controller = new AbortController();
    const submitted = client
      .request('/v1/memory/batch?batch_id=record-cut&invalid_items=record', {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: heldBody(20_000, (i) => JSON.stringify(memory(i, 'cut')), 5_000, released, true),
        duplex: 'half',
        signal: controller.signal,
      } as RequestInit)
      .catch((error: unknown) => error);
    try {
      await waitForStreamed(client, 'record-cut', (batch) => batch.request_counts.processed > 0, 60_000);
    } finally {
      controller.abort();
      release();
    }
    await submitted;
    const final = (await client.waitForFinal('record-cut', 60_000)) as StreamedBatch;
    expect(final.status).toBe('cancelled');
    expect(final.error).toMatch(/upload ended before the body was complete/);
    expect(final.upload.complete).toBe(false);
    expect(final.request_counts.total).toBe(final.upload.received);
    expect(final.request_counts.processed).toBeGreaterThan(0);
    expect(final.request_counts.succeeded).toBe(final.request_counts.processed);
    // What was processed is stored and listed.
    const results = await client.all<{ index: number; status: string }>('/v1/batch/record-cut/results');
    expect(results.filter((r) => r.status === 'succeeded').length).toBe(final.request_counts.succeeded);
  }, 120_000);

  it('keeps storing the body after max_failed_items trips mid-upload; a retry then processes the rest with exact counts', async () => {
    // The trial's body: 4,000 lines, every line i % 100 == 7 cut off, at most 5 failed items tolerated.
    const count = 4_000;
    const line = (i: number) => (i % 100 === 7 ? '{bad' : JSON.stringify(memory(i, 'limit')));
    const { opened: released, open: release } = gate();
    const submitted = client.submitNdjson(heldBody(count, line, 2_000, released), '?batch_id=record-limit&invalid_items=record&max_failed_items=5');
    submitted.catch(() => undefined); // awaited below
    let stopped: StreamedBatch;
    try {
      // The first segment's 10 invalid lines trip the limit while the rest of the body is held back.
      stopped = await waitForStreamed(client, 'record-limit', (batch) => batch.status === 'failed', 60_000);
      // The resource shows the upload as documented, nothing more (the record's stall clock stays inside).
      expect(stopped.upload).toEqual({ complete: false, received: stopped.request_counts.total });
      expect((stopped as unknown as { on_existing: string }).on_existing).toBe('update');
      // Its total is not known yet: a redrive now would wait on the upload, so it is refused.
      const early = await client.request('/v1/batch/record-limit/retry', { method: 'POST' });
      expect(early.status, await early.clone().text()).toBe(409);
      expect(((await early.json()) as { detail: string }).detail).toMatch(/upload is still open/);
      // A resubmit racing the open upload is 409 (not a replay of a batch whose body is not all stored).
      const racing = await client.submitNdjson(JSON.stringify(memory(0, 'limit')) + '\n', '?batch_id=record-limit&invalid_items=record');
      expect(racing.status, await racing.clone().text()).toBe(409);
    } finally {
      release();
    }
    const response = await submitted;
    expect(response.status, await response.clone().text()).toBe(202);
    const ended = await waitForStreamed(client, 'record-limit', (batch) => batch.upload.complete, 30_000);
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatch(/max_failed_items 5/);
    expect(ended.upload).toEqual({ complete: true, received: count });
    expect(ended.request_counts.total).toBe(count);
    expect(ended.request_counts.processed).toBeLessThan(count);

    const retried = await client.request('/v1/batch/record-limit/retry', { method: 'POST' });
    expect(retried.status, await retried.clone().text()).toBe(202);
    const final = (await client.waitForFinal('record-limit', 60_000)) as StreamedBatch;
    expect(final.status).toBe('completed');
    expect(final.request_counts).toMatchObject({ total: count, processed: count, succeeded: count - 40, failed: 40 });
    const errors = await client.all<{ index: number }>('/v1/batch/record-limit/errors');
    expect(errors.map((e) => e.index)).toEqual(Array.from({ length: 40 }, (_, k) => k * 100 + 7));
    // Papr's errors[].code: an invalid memory is the client's error (400), not a server error.
    const single = (await (await client.request('/v1/batch/record-limit')).json()) as { errors: { index: number; code: number }[] };
    expect(single.errors.length).toBe(40);
    expect(new Set(single.errors.map((e) => e.code))).toEqual(new Set([400]));
  }, 120_000);

  it('records invalid memories of a JSON body whose invalid_items follows the memories; reject (default) still refuses', async () => {
    const memories = Array.from({ length: 50 }, (_, i) => (i % 20 === 7 ? { content: '' , external_id: `json-${i}` } : memory(i, 'json')));
    const recorded = await client.submitJson({ memories, batch_id: 'record-json', invalid_items: 'record' });
    expect(recorded.status, await recorded.clone().text()).toBe(202);
    const final = (await client.waitForFinal('record-json', 60_000)) as StreamedBatch;
    expect(final.request_counts).toMatchObject({ total: 50, succeeded: 47, failed: 3 });
    const errors = await client.all<{ index: number; external_id: string | null; error: string }>('/v1/batch/record-json/errors');
    expect(errors.map((e) => [e.index, e.external_id])).toEqual([[7, 'json-7'], [27, 'json-27'], [47, 'json-47']]);
    expect(errors[0]!.error).toMatch(/^memories\.7 is invalid: .*content/);

    const rejected = await client.submitJson({ memories, batch_id: 'reject-json' });
    expect(rejected.status).toBe(400);
    expect(((await rejected.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe('memories.7.content');
    expect((await client.request('/v1/batch/reject-json')).status).toBe(404);
  }, 60_000);
});
