// Measurements on embedded defaults (SQLite records and sink, file payloads, in-process orchestrator), each against
// the real server process over HTTP:
//   2. end-to-end throughput, divided by the raw bulk-write rate of the same sink measured in the same run;
//   3. peak RSS of the API process while ingesting N memories by NDJSON;
//   6. submit latency with 20 concurrent submitters.
import { once } from 'node:events';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteMemorySink } from '../src/adapters/local/memory-sink.ts';
import { defaultSettings } from '../src/app/services.ts';
import { Segmenter } from '../src/domain/codec.ts';
import { type MemoryRecord, toMemoryRecord } from '../src/domain/memory.ts';
import type { MemorySink } from '../src/ports/memory-sink.ts';
import { apiClient, type ApiClient, type BatchJson } from '../test/support/api-client.ts';
import { corpus, corpusMemory, corpusNdjson } from './corpus.ts';
import { benchApiKey, type BenchProcess, cpuSince, type ProcessCpu, sampleMemory, startProcess } from './server.ts';

type Log = (line: string) => void;

function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'batchmem-bench-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A fresh embedded server on its own data folder; the only non-default is the API key (and quieter logs). */
export async function embeddedServer(extraEnv: Record<string, string> = {}) {
  const dir = tempDir();
  const key = benchApiKey();
  const proc = await startProcess({
    env: { BATCHMEM_DATA_DIR: dir.path, BATCHMEM_API_KEYS: JSON.stringify([key]), BATCHMEM_LOG_LEVEL: 'warn', ...extraEnv },
  });
  return {
    proc,
    api: apiClient(proc.url, key.key),
    dataDir: dir.path,
    async close() {
      await proc.stop();
      dir.remove();
    },
  };
}

/** Polls the batch every `intervalMs` (finer than the test client's 200 ms, which would blur the timings). */
export async function waitForFinal(api: ApiClient, id: string, timeoutMs: number, intervalMs = 50): Promise<BatchJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await api.get(id);
    if (['completed', 'failed', 'cancelled'].includes(batch.status)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${batch.status} after ${timeoutMs} ms: ${JSON.stringify(batch.request_counts)}`);
    await sleep(intervalMs);
  }
}

async function submitOrThrow(api: ApiClient, body: ReadableStream<Uint8Array> | string, query = ''): Promise<BatchJson> {
  const response = await api.submitNdjson(body, query);
  if (response.status !== 202) throw new Error(`submit answered ${response.status}: ${(await response.text()).slice(0, 2000)}`);
  return (await response.json()) as BatchJson;
}

/** The corpus pre-serialized into NDJSON chunks, so the client's work is not timed with the server's. */
export function ndjsonChunks(count: number, from = 0): Uint8Array[] {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (let start = from; start < from + count; start += 256) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(from + count, start + 256); i++) lines.push(JSON.stringify(corpusMemory(i)));
    chunks.push(encoder.encode(lines.join('\n') + '\n'));
  }
  return chunks;
}

/**
 * A prepared NDJSON body of `count` memories, generated before the clock starts: in memory up to 200,000, in a
 * temporary file above that (a million memories are about 1.5 GB).
 */
export async function preparedBody(count: number): Promise<{ open(): ReadableStream<Uint8Array>; remove(): void }> {
  if (count <= 200_000) {
    const chunks = ndjsonChunks(count);
    return { open: () => streamOf(chunks), remove: () => {} };
  }
  const dir = tempDir();
  const path = join(dir.path, 'body.ndjson');
  const out = createWriteStream(path);
  for (let start = 0; start < count; start += 10_000) {
    for (const chunk of ndjsonChunks(Math.min(10_000, count - start), start)) {
      if (!out.write(chunk)) await once(out, 'drain');
    }
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return {
    open: () => Readable.toWeb(createReadStream(path, { highWaterMark: 256 * 1024 })) as ReadableStream<Uint8Array>,
    remove: () => dir.remove(),
  };
}

export function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream({
    pull(controller) {
      if (next >= chunks.length) return controller.close();
      controller.enqueue(chunks[next++]!);
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Throughput

export interface SinkRate {
  memories: number;
  segments: number;
  seconds: number;
  memoriesPerSecond: number;
  /** CPU the writes took (this process, user + system), in seconds. */
  cpuSeconds?: number;
}

/** Segment item counts as the product cuts this part of the corpus. */
function segmentSizes(count: number): number[] {
  const segmenter = new Segmenter({ maxItems: defaultSettings.segmentMaxItems, maxRawBytes: defaultSettings.segmentMaxRawBytes });
  const sizes: number[] = [];
  for (const item of corpus(count)) for (const full of segmenter.add(JSON.stringify(item))) sizes.push(full.itemCount);
  const last = segmenter.finish();
  if (last) sizes.push(last.itemCount);
  return sizes;
}

/**
 * The storage limit: `sink.writeSegment` of records built beforehand (ids and hashes computed), one call per segment
 * of the product's size, back to back, from this process.
 */
export async function sinkRate(count: number, sink: MemorySink, batchKey: string): Promise<SinkRate> {
  const tenant = { organization: 'bench', namespace: 'bench', user: 'bench', workspace: 'bench' };
  const segments: MemoryRecord[][] = [];
  let index = 0;
  for (const size of segmentSizes(count)) {
    const records: MemoryRecord[] = [];
    for (const item of corpus(size, { from: index })) records.push(toMemoryRecord(batchKey, tenant, index++, item));
    segments.push(records);
  }
  const start = performance.now();
  const cpuBefore = process.cpuUsage();
  for (const records of segments) {
    const outcomes = await sink.writeSegment(records);
    if (outcomes.some((outcome) => !outcome.ok)) throw new Error(`the sink refused items: ${JSON.stringify(outcomes.find((o) => !o.ok))}`);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const seconds = (performance.now() - start) / 1000;
  return { memories: count, segments: segments.length, seconds, memoriesPerSecond: count / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** SqliteMemorySink on a fresh database file, as the embedded defaults use it. */
export async function rawSinkRate(count: number): Promise<SinkRate> {
  const dir = tempDir();
  const sink = new SqliteMemorySink(join(dir.path, 'memories.db'));
  try {
    return await sinkRate(count, sink, 'bench:raw-sink');
  } finally {
    await sink.close();
    dir.remove();
  }
}

export interface EndToEndRun {
  memories: number;
  /** The batch option: with `record`, processing starts with the first stored segment, overlapping the upload. */
  invalidItems?: 'reject' | 'record';
  segments: number;
  /** POST start to 202: the body streamed, validated, compressed and stored. */
  submitSeconds: number;
  /** 202 to `completed`. */
  processSeconds: number;
  totalSeconds: number;
  memoriesPerSecond: number;
  status: string;
  /** The server's CPU from the POST to `completed`, in all and by thread (where the time goes; see bench/server.ts). */
  cpu?: ProcessCpu;
}

export async function endToEnd(count: number, log: Log, invalidItems: 'reject' | 'record' = 'reject'): Promise<EndToEndRun> {
  const chunks = ndjsonChunks(count);
  const server = await embeddedServer();
  try {
    const cpuBefore = server.proc.cpu();
    const start = performance.now();
    const accepted = await submitOrThrow(server.api, streamOf(chunks), invalidItems === 'record' ? '?invalid_items=record' : '');
    const acceptedAt = performance.now();
    const done = await waitForFinal(server.api, accepted.id, 30 * 60_000);
    const end = performance.now();
    const cpu = cpuSince(cpuBefore, server.proc.cpu());
    if (done.status !== 'completed' || done.request_counts.succeeded !== count) {
      throw new Error(`batch ended ${done.status} with ${JSON.stringify(done.request_counts)}`);
    }
    const run = {
      memories: count,
      invalidItems,
      segments: done.payload.segments,
      submitSeconds: (acceptedAt - start) / 1000,
      processSeconds: (end - acceptedAt) / 1000,
      totalSeconds: (end - start) / 1000,
      memoriesPerSecond: count / ((end - start) / 1000),
      status: done.status,
      cpu,
    };
    log(`  embedded end to end (${invalidItems}): ${count} memories in ${run.totalSeconds.toFixed(1)} s (submit ${run.submitSeconds.toFixed(1)} s, process ${run.processSeconds.toFixed(1)} s)`);
    return run;
  } finally {
    await server.close();
  }
}

export interface ThroughputResult {
  memories: number;
  /** Raw sink and end-to-end measured in turns, `repeats` times each; the ratio is of the medians. */
  repeats: number;
  sinkRuns: SinkRate[];
  endToEndRuns: EndToEndRun[];
  sinkMemoriesPerSecond: number;
  endToEndMemoriesPerSecond: number;
  /** Median end-to-end memories/s divided by median raw sink memories/s. */
  ratio: number;
  /** Smallest and largest ratio of one end-to-end run to the sink run just before it. */
  ratioRange: [number, number];
  /** The processing phase alone (202 to completed) against the sink: what the worker side achieves. */
  processOnlyRatio: number;
  target: number;
  /**
   * The same path with `invalid_items: record` (processing overlaps the upload), measured in the same turns; absent
   * in results recorded before the option existed.
   */
  record?: { runs: EndToEndRun[]; memoriesPerSecond: number; ratio: number; ratioRange: [number, number]; target: number };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export async function runEmbeddedThroughput(options: { memories: number; repeats: number; log: Log }): Promise<ThroughputResult> {
  // The sink alone and the whole path in turns, on the same corpus slice and segment sizes, so that a noisy
  // neighbour hits both about equally.
  const sinkRuns: SinkRate[] = [];
  const endToEndRuns: EndToEndRun[] = [];
  const recordRuns: EndToEndRun[] = [];
  for (let repeat = 0; repeat < options.repeats; repeat++) {
    const sink = await rawSinkRate(options.memories);
    options.log(`  raw sink: ${options.memories} memories in ${sink.seconds.toFixed(2)} s (${Math.round(sink.memoriesPerSecond)}/s)`);
    sinkRuns.push(sink);
    endToEndRuns.push(await endToEnd(options.memories, options.log));
    recordRuns.push(await endToEnd(options.memories, options.log, 'record'));
  }
  const recordRate = median(recordRuns.map((r) => r.memoriesPerSecond));
  const recordPairs = recordRuns.map((r, i) => r.memoriesPerSecond / sinkRuns[i]!.memoriesPerSecond);
  const sinkRate = median(sinkRuns.map((r) => r.memoriesPerSecond));
  const endToEndRate = median(endToEndRuns.map((r) => r.memoriesPerSecond));
  const pairRatios = endToEndRuns.map((r, i) => r.memoriesPerSecond / sinkRuns[i]!.memoriesPerSecond);
  const processRate = median(endToEndRuns.map((r) => r.memories / r.processSeconds));
  return {
    memories: options.memories,
    repeats: options.repeats,
    sinkRuns,
    endToEndRuns,
    sinkMemoriesPerSecond: sinkRate,
    endToEndMemoriesPerSecond: endToEndRate,
    ratio: endToEndRate / sinkRate,
    ratioRange: [Math.min(...pairRatios), Math.max(...pairRatios)],
    processOnlyRatio: processRate / sinkRate,
    target: 0.7,
    record: {
      runs: recordRuns,
      memoriesPerSecond: recordRate,
      ratio: recordRate / sinkRate,
      ratioRange: [Math.min(...recordPairs), Math.max(...recordPairs)],
      target: 0.8,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Peak RSS while ingesting by NDJSON

export interface RssRun {
  memories: number;
  ndjsonBytes: number;
  /** RSS of the idle server right after start. */
  idleRssBytes: number;
  /** VmHWM at the end of the batch: the peak over start, ingestion and processing. */
  peakRssBytes: number;
  /** Largest RSS sampled (every 250 ms) while the body was uploading, and after the 202 while processing. */
  uploadMaxRssBytes: number;
  processingMaxRssBytes: number;
  /** RSS after the batch completed. */
  finalRssBytes: number;
  /** RSS samples, one a second: [ms since the upload began, bytes]. */
  series: [number, number][];
  totalSeconds: number;
  status: string;
}

export async function rssWhileIngesting(count: number, log: Log): Promise<RssRun> {
  const server = await embeddedServer();
  try {
    const idle = server.proc.memory();
    const sampler = sampleMemory(server.proc);
    let ndjsonBytes = 0;
    const body = corpusNdjson(count).pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          ndjsonBytes += chunk.byteLength;
          controller.enqueue(chunk);
        },
      }),
    );
    const start = performance.now();
    const accepted = await submitOrThrow(server.api, body);
    const acceptedMs = sampler.elapsedMs();
    const done = await waitForFinal(server.api, accepted.id, 60 * 60_000, 250);
    const memory = await sampler.stop();
    const run = {
      memories: count,
      ndjsonBytes,
      idleRssBytes: idle.rssBytes,
      peakRssBytes: memory.peakRssBytes,
      // A phase shorter than the sampling interval has no sample of its own: its bounds stand in.
      uploadMaxRssBytes: Math.max(idle.rssBytes, sampler.maxBetween(0, acceptedMs)),
      processingMaxRssBytes: Math.max(memory.rssBytes, sampler.maxBetween(acceptedMs)),
      finalRssBytes: memory.rssBytes,
      series: memory.series.filter((_, i) => i % 4 === 0).map((s): [number, number] => [s.ms, s.rssBytes]),
      totalSeconds: (performance.now() - start) / 1000,
      status: done.status,
    };
    const m = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    log(`  peak RSS at ${count}: ${m(run.peakRssBytes)} (idle ${m(run.idleRssBytes)}, upload max ${m(run.uploadMaxRssBytes)}, processing max ${m(run.processingMaxRssBytes)}, end ${m(run.finalRssBytes)}), ${done.status} in ${run.totalSeconds.toFixed(1)} s`);
    return run;
  } finally {
    await server.close();
  }
}

export interface RssResult {
  runs: RssRun[];
  targetBytes: number;
  targetAt: number;
}

export async function runRss(options: { sizes: number[]; log: Log }): Promise<RssResult> {
  const runs: RssRun[] = [];
  for (const size of options.sizes) runs.push(await rssWhileIngesting(size, options.log));
  return { runs, targetBytes: 256 * 2 ** 20, targetAt: 1_000_000 };
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Submit latency

export interface LatencyStats {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LatencyResult {
  submitters: number;
  memoriesPerRequest: number;
  rounds: number;
  concurrent: LatencyStats;
  /** One submitter alone, same request size: the uncontended baseline. */
  alone: LatencyStats;
  /** Memories accepted per second while the concurrent submitters ran. */
  acceptedPerSecond: number;
  /** The server's CPU per submit while the concurrent submitters ran, in ms: in all and on the HTTP thread alone. */
  cpuPerSubmitMs?: { total: number; httpThread: number; uploadThread?: number };
}

export function stats(samples: number[]): LatencyStats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { requests: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1)! };
}

export async function runLatency(options: { submitters: number; memoriesPerRequest: number; rounds: number; log: Log }): Promise<LatencyResult> {
  const { submitters, memoriesPerRequest, rounds } = options;
  const bodies = Array.from({ length: submitters }, (_, s) => {
    const chunks = ndjsonChunks(memoriesPerRequest, s * memoriesPerRequest);
    return Buffer.concat(chunks).toString('utf8');
  });
  const server = await embeddedServer();
  try {
    // Each submit names its batch: the same body sent again without a name would be answered from the dedupe window.
    let submits = 0;
    const timedSubmit = async (body: string) => {
      const query = `?batch_id=latency-${(submits += 1)}`;
      const start = performance.now();
      await submitOrThrow(server.api, body, query);
      return performance.now() - start;
    };
    // Uncontended first: one submitter, the same number of requests as one concurrent submitter makes.
    const alone: number[] = [];
    for (let round = 0; round < Math.max(rounds, 10); round++) alone.push(await timedSubmit(bodies[round % submitters]!));
    // Let the server drain the work those submissions queued before the contended run.
    await waitForIdle(server.api);

    const concurrent: number[] = [];
    const cpuBefore = server.proc.cpu();
    const start = performance.now();
    await Promise.all(
      bodies.map(async (body) => {
        for (let round = 0; round < rounds; round++) concurrent.push(await timedSubmit(body));
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    // The total includes the processing that ran meanwhile on the other thread; the HTTP thread's share is the submits'.
    const cpu = cpuSince(cpuBefore, server.proc.cpu());
    const result = {
      submitters,
      memoriesPerRequest,
      rounds,
      concurrent: stats(concurrent),
      alone: stats(alone),
      acceptedPerSecond: (submitters * rounds * memoriesPerRequest) / seconds,
      cpuPerSubmitMs: {
        total: (cpu.totalSeconds * 1000) / concurrent.length,
        httpThread: ((cpu.byThread.MainThread ?? 0) * 1000) / concurrent.length,
        uploadThread: ((cpu.byThread.upload ?? 0) * 1000) / concurrent.length,
      },
    };
    options.log(`  submit latency, ${submitters} concurrent: p50 ${result.concurrent.p50Ms.toFixed(0)} ms, p99 ${result.concurrent.p99Ms.toFixed(0)} ms (alone: p50 ${result.alone.p50Ms.toFixed(0)} ms)`);
    return result;
  } finally {
    await server.close();
  }
}

async function waitForIdle(api: ApiClient, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = await Promise.all(['pending', 'processing'].map((status) => api.all<{ id: string }>(`/v1/batch?status=${status}`)));
    if (pending.every((list) => list.length === 0)) return;
    if (Date.now() > deadline) throw new Error('the server did not finish its queued batches');
    await sleep(200);
  }
}

