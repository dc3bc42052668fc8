// What the HTTP pipeline sink does beyond the MemorySink contract, against a loopback memory service: outcomes by
// status, the same Idempotency-Key on every retry, Retry-After, the rate limit, timeouts, resets, the breaker.
import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type StartThread, startWorker } from '../../src/adapters/http/delivery-thread.ts';
import { SinkUnavailableError, type HttpSinkObserver } from '../../src/adapters/http/memory-sink.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';
import { tenantA, uniqueId } from '../support/batches.ts';
import { memoryRowCount } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess } from '../support/server-process.ts';
import { testHttpSink } from '../support/http-sink.ts';
import { type ReceiverOptions, sinkReceiver, type SinkReceiver } from '../support/sink-receiver.ts';
import { storedCount } from '../support/stored.ts';

/** External ids are unique per batch here: the sink upserts by external id across batches of a tenant. */
function records(count: number, content = (i: number) => `memory ${i}`) {
  const key = uniqueId('k');
  return Array.from({ length: count }, (_, i) => toMemoryRecord(key, tenantA, i, { content: content(i), external_id: `${key}-ext-${i}` }));
}

function recordingObserver() {
  const seen = { requests: [] as string[], retries: [] as string[], pauses: [] as string[] };
  const observer: HttpSinkObserver = {
    requestFinished: (status) => seen.requests.push(status),
    retried: (reason) => seen.retries.push(reason),
    paused: (reason) => seen.pauses.push(reason),
  };
  return { seen, observer };
}

describe('HTTP pipeline sink', () => {
  let cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of cleanup.reverse()) await close();
    cleanup = [];
  });

  async function rig(receiverOptions: ReceiverOptions, sinkOptions: Partial<Parameters<typeof testHttpSink>[0]> = {}) {
    const secret = 'whsec_' + randomBytes(32).toString('base64');
    const receiver = await sinkReceiver({ secret, ...receiverOptions });
    const { seen, observer } = recordingObserver();
    const format = sinkOptions.format ?? 'ndjson';
    const url = format === 'ndjson' ? `${receiver.url}/ingest` : receiver.url;
    const { sink, close } = testHttpSink({ url, format, secret, observer, ...sinkOptions });
    cleanup.push(async () => { await close(); await receiver.close(); });
    return { receiver, sink, seen };
  }

  const distinctDelivered = (receiver: SinkReceiver) => [...receiver.acceptedKeys.values()].flat();

  it('keeps the id the target returns as the sink id of each memory', async () => {
    const { receiver, sink } = await rig({}, { format: 'papr' });
    const batch = records(5);
    await sink.writeSegment(batch);
    const listed = await sink.listByBatch(batch[0]!.batchKey, -1, 10);
    expect(listed.map((m) => m.sinkId)).toEqual(batch.map((r) => receiver.stored.get(r.memoryId)!.sinkId));
    expect(receiver.stored.get(batch[0]!.memoryId)!.body).toMatchObject({ content: 'memory 0', external_id: `${batch[0]!.batchKey}-ext-0`, metadata: { batchmem_memory_id: batch[0]!.memoryId } });
  });

  it('reports a 400 as a per-item failure with the target’s status and message, and never sends it again', async () => {
    const { receiver, sink, seen } = await rig({ refuseMarker: 'FORBIDDEN' }, { chunkSize: 10 });
    const batch = records(30, (i) => (i === 13 ? 'FORBIDDEN memory' : `memory ${i}`));
    const outcomes = await sink.writeSegment(batch);
    expect(outcomes.filter((o) => !o.ok)).toEqual([{ index: 13, ok: false, error: expect.stringMatching(/^target answered 400: memory mem_\w+ holds forbidden content$/) }]);
    expect(receiver.stored.size).toBe(29);
    // The refused chunk once, then its ten memories alone: the refused one exactly once more.
    expect(receiver.arrivals.filter((a) => a.status === 400).length).toBe(2);
    expect(seen.retries).toEqual([]);
    expect(await storedCount(sink, batch[0]!.batchKey)).toBe(29);
  });

  it('sends an unchanged memory once across batches and an updated one again under its memory id', async () => {
    const { receiver, sink } = await rig({}, { format: 'papr', chunkSize: 10 });
    const prefix = uniqueId('x');
    const batch = (content: (i: number) => string) => {
      const key = uniqueId('k');
      return Array.from({ length: 20 }, (_, i) => toMemoryRecord(key, tenantA, i, { content: content(i), external_id: `${prefix}-${i}` }));
    };
    const first = await sink.writeSegment(batch((i) => `memory ${i}`));
    expect(distinctDelivered(receiver)).toHaveLength(20);
    const again = await sink.writeSegment(batch((i) => `memory ${i}`));
    expect(again.map((o) => o.ok && o.outcome)).toEqual(Array(20).fill('unchanged'));
    expect(distinctDelivered(receiver)).toHaveLength(20);
    const changed = await sink.writeSegment(batch((i) => (i % 5 === 0 ? `edited memory ${i}` : `memory ${i}`)));
    expect(changed.filter((o) => o.ok && o.outcome === 'updated').map((o) => o.index)).toEqual([0, 5, 10, 15]);
    // Only the four changed memories went out again, each under the id it was created with.
    expect(distinctDelivered(receiver)).toHaveLength(24);
    expect(distinctDelivered(receiver).slice(20).sort()).toEqual([0, 5, 10, 15].map((i) => (first[i]!.ok ? first[i]!.memoryId : '')).sort());
    expect(changed.map((o) => o.ok && o.memoryId)).toEqual(first.map((o) => o.ok && o.memoryId));
  });

  it('treats 409 as already delivered', async () => {
    const { receiver, sink } = await rig({ plan: () => ({ kind: 'answer', status: 409, body: '{"detail":"already have it"}' }) });
    const batch = records(3);
    expect((await sink.writeSegment(batch)).every((o) => o.ok)).toBe(true);
    expect(receiver.arrivals.length).toBe(1);
    expect(await storedCount(sink, batch[0]!.batchKey)).toBe(3);
  });

  it('sends the same Idempotency-Key on every retry of a chunk, through 5xx, timeouts and resets', async () => {
    const { receiver, sink, seen } = await rig(
      {
        plan: ({ seq }) =>
          seq === 1 ? { kind: 'answer', status: 500 } : seq === 2 ? { kind: 'reset' } : seq === 3 ? { kind: 'slow', delayMs: 1500 } : undefined,
      },
      { timeoutMs: 500, chunkSize: 10 },
    );
    const batch = records(10);
    expect((await sink.writeSegment(batch)).every((o) => o.ok)).toBe(true);
    expect(receiver.arrivals.length).toBe(4);
    expect(new Set(receiver.arrivals.map((a) => a.key)).size).toBe(1);
    expect(receiver.acceptedKeys.size).toBe(1);
    expect(seen.retries).toEqual(['500', 'network', 'timeout']);
  });

  it('sends nothing while a Retry-After window is open, in seconds or as an HTTP date', async () => {
    let answered = 0;
    const { receiver, sink, seen } = await rig(
      {
        plan: () => {
          answered += 1;
          if (answered === 1) return { kind: 'answer', status: 429, retryAfter: '1' };
          if (answered === 2) return { kind: 'answer', status: 503, retryAfter: new Date(Date.now() + 2000).toUTCString() };
          return undefined;
        },
      },
      { concurrency: 1, chunkSize: 5 },
    );
    await sink.writeSegment(records(10));
    const [first, second, third] = receiver.arrivals;
    expect(second!.atMs - first!.atMs).toBeGreaterThanOrEqual(990);
    // An HTTP date has whole seconds: the window ends between 1 and 2 s after the answer.
    expect(third!.atMs - second!.atMs).toBeGreaterThanOrEqual(990);
    expect(receiver.requestsInsideWindows(0)).toEqual([]);
    expect(seen.pauses).toEqual(['retry_after', 'retry_after']);
  });

  it('never sends more memories in any one-second window than the configured rate', async () => {
    const { receiver, sink } = await rig({}, { ratePerSecond: 100, chunkSize: 10, concurrency: 8 });
    const startedAt = Date.now();
    await Promise.all([sink.writeSegment(records(150)), sink.writeSegment(records(150))]);
    expect(receiver.stored.size).toBe(300);
    expect(receiver.maxMemoriesPerSecond()).toBeLessThanOrEqual(100);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(2000);
  });

  it('pauses new work while the target keeps failing, and resumes by itself', async () => {
    let failing = true;
    setTimeout(() => (failing = false), 1500);
    const { receiver, sink, seen } = await rig({ plan: () => (failing ? { kind: 'answer', status: 502 } : undefined) }, { chunkSize: 5 });
    const batch = records(100);
    expect((await sink.writeSegment(batch)).every((o) => o.ok)).toBe(true);
    expect(seen.pauses).toContain('breaker');
    // Without the breaker, 20 chunks retried with backoff from 40 ms would send far more requests in 1.5 s.
    expect(receiver.arrivals.filter((a) => a.status === 502).length).toBeLessThan(60);
    expect(distinctDelivered(receiver).length).toBe(100);
  });

  it('gives up on a chunk after the outage tolerance, so the segment attempt fails and is retried later', async () => {
    const { receiver, sink } = await rig({}, { outageToleranceMs: 1000 });
    await receiver.setDown(true);
    await expect(sink.writeSegment(records(3))).rejects.toBeInstanceOf(SinkUnavailableError);
    await expect(sink.check()).rejects.toThrow(/target/);
    await receiver.setDown(false);
    await new Promise((resolve) => setTimeout(resolve, 2100)); // the breaker's pause ends
    await expect(sink.check()).resolves.toBeUndefined();
  });

  it('fails the requests of a delivery thread that dies, and sends them again from a new thread', async () => {
    const threads: Worker[] = [];
    const startThread: StartThread = (entry, workerData) => {
      const worker = startWorker(entry, workerData);
      threads.push(worker);
      return worker;
    };
    let holding = true;
    const { receiver, sink } = await rig({ plan: () => (holding ? { kind: 'slow', delayMs: 1500 } : undefined) }, { startThread, chunkSize: 5 });
    const batch = records(20);
    const first = sink.writeSegment(batch);
    await vi.waitFor(() => expect(receiver.stored.size).toBeGreaterThan(0), { timeout: 5000 });
    await threads[0]!.terminate();
    await expect(first).rejects.toBeInstanceOf(SinkUnavailableError);
    holding = false;
    // The segment's retry starts a second thread; every memory reaches the target once, under the same keys.
    expect((await sink.writeSegment(batch)).every((o) => o.ok)).toBe(true);
    expect(threads).toHaveLength(2);
    expect(distinctDelivered(receiver).sort()).toEqual(batch.map((r) => r.memoryId).sort());
  });

  it('sends Papr chunks one at a time when the target has no batch route', async () => {
    const { receiver, sink } = await rig({ batchRoute: false }, { format: 'papr', chunkSize: 20 });
    const batch = records(40);
    expect((await sink.writeSegment(batch)).every((o) => o.ok)).toBe(true);
    // Both chunks may ask before the first 404 comes back; after it, none does.
    expect(receiver.arrivals.filter((a) => a.path === '/v1/memory/batch').length).toBeLessThanOrEqual(2);
    expect(receiver.arrivals.filter((a) => a.path === '/v1/memory/batch').every((a) => a.status === 404)).toBe(true);
    expect(receiver.arrivals.filter((a) => a.path === '/v1/memory').length).toBe(40);
  });

  it('reads per-item refusals from a Papr batch answer', async () => {
    const { receiver, sink } = await rig({ batchRoute: true, refuseMarker: 'FORBIDDEN' }, { format: 'papr', chunkSize: 50 });
    const batch = records(50, (i) => (i % 10 === 3 ? 'FORBIDDEN' : `memory ${i}`));
    const failed = (await sink.writeSegment(batch)).filter((o) => !o.ok).map((o) => o.index);
    expect(failed).toEqual([3, 13, 23, 33, 43]);
    expect(receiver.arrivals.length).toBe(1);
    expect(receiver.stored.size).toBe(45);
  });

  it('chains two batchmem processes: the target stores each memory once, even when everything is sent again', async () => {
    const keys = testKeys();
    const dir = tempDir();
    const target = await serverProcess({ ...commonEnv(keys), BATCHMEM_FAULT_ITEM_MARKER: '', BATCHMEM_DATA_DIR: dir.path });
    await target.start();
    cleanup.push(async () => { await target.stop(); dir.remove(); });
    const batch = records(30, (i) => (i === 7 ? ' ' : `memory ${i}`));
    const first = testHttpSink({ url: target.url, format: 'papr', apiKey: keys[0]!.key });
    cleanup.push(first.close);
    const outcomes = await first.sink.writeSegment(batch);
    // The target refuses the whitespace-only memory (400): a permanent failure with its status and message.
    expect(outcomes.filter((o) => !o.ok)).toEqual([{ index: 7, ok: false, error: expect.stringMatching(/^target answered 400: .*content/) }]);
    const sinkIdsOf = async (sink: typeof first.sink) => (await sink.listByBatch(batch[0]!.batchKey, -1, 100)).map((m) => [m.index, m.sinkId]);
    const sinkIds = await sinkIdsOf(first.sink);
    expect(sinkIds).toHaveLength(29);
    expect(sinkIds.every(([, id]) => typeof id === 'string' && id.startsWith('mem_'))).toBe(true);
    // A second sink with an empty ledger sends all of it again, under the same Idempotency-Keys.
    const second = testHttpSink({ url: target.url, format: 'papr', apiKey: keys[0]!.key });
    cleanup.push(second.close);
    await second.sink.writeSegment(batch);
    expect(await sinkIdsOf(second.sink)).toEqual(sinkIds);
    expect(memoryRowCount(dir.path)).toBe(29);
  });
});
