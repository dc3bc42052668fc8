// 8. Fair share between tenants: how long another tenant's small batch takes, from its POST until `completed`, while
// one tenant's backlog of large batches is being processed. Baseline: the same small batch on the same server, idle.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { apiClient, type ApiClient, type BatchJson } from '../test/support/api-client.ts';
import { corpusMemory } from './corpus.ts';
import { type LatencyStats, stats, waitForFinal } from './embedded.ts';
import { startProcess } from './server.ts';

type Log = (line: string) => void;

export interface FairnessRun {
  orchestrator: 'embedded' | 'temporal';
  /** How the orchestrator shares its work between tenants (what this run measured). */
  mechanism: string;
  backlogBatches: number;
  backlogMemoriesPerBatch: number;
  smallMemories: number;
  /** The small batch on the idle server. */
  alone: LatencyStats;
  /** The small batch while the backlog runs: POST until `completed`. */
  underBacklog: LatencyStats;
  /** Each try under the backlog, in order (ms). */
  underBacklogSamplesMs: number[];
  /** Of the backlog's batches, how many were still unfinished when the last small batch completed. */
  backlogUnfinishedAtEnd: number;
  /** Seconds from the backlog's first POST until all its batches completed. */
  backlogSeconds: number;
}

export interface FairnessResult {
  runs: FairnessRun[];
  /** Why a run is missing (Temporal without Docker, for instance). */
  notMeasured: { orchestrator: string; reason: string }[];
}

/** Two tenants' API keys, as `BATCHMEM_API_KEYS` takes them. */
export function tenantKeys() {
  const key = (organization: string) => ({ key: `bench-${randomBytes(16).toString('hex')}`, organization, namespace: 'bench', user: organization, workspace: 'bench' });
  return { busy: key('bench-busy'), small: key('bench-small') };
}

/**
 * `count` corpus memories (from a million on, so they differ from the small batches'), serialized once before the
 * clock starts and sent as each backlog batch. Their external ids are dropped: every batch then creates its own
 * memories instead of finding the first one's unchanged, so each does the full work.
 */
function backlogChunks(count: number): Uint8Array[] {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (let start = 0; start < count; start += 256) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(count, start + 256); i++) {
      const { external_id: _dropped, ...memory } = corpusMemory(1_000_000 + i);
      lines.push(JSON.stringify(memory));
    }
    chunks.push(encoder.encode(lines.join('\n') + '\n'));
  }
  return chunks;
}

/** Each submit carries its own Idempotency-Key: the backlog's batches have equal bodies, which a key-less submit would dedupe. */
/**
 * Each large upload on a connection of its own: building the body keeps this process busy for seconds, during which
 * the server closes the idle keep-alive connections of the earlier requests (after 5 s); writing a POST body to such
 * a connection fails with EPIPE before the close is noticed.
 */
async function submitLarge(url: string, key: string, chunks: Uint8Array[]): Promise<string> {
  const dispatcher = new Agent();
  const response = await request(`${url}/v1/memory/batch`, {
    dispatcher,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson', 'idempotency-key': randomBytes(12).toString('hex') },
    body: Readable.from(chunks),
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const text = await response.body.text();
  await dispatcher.close();
  if (response.statusCode !== 202) throw new Error(`submit answered ${response.statusCode}: ${text.slice(0, 2000)}`);
  return (JSON.parse(text) as { id: string }).id;
}

async function submit(api: ApiClient, body: ReadableStream<Uint8Array> | string): Promise<BatchJson> {
  const response = await api.submitNdjson(body, '', { 'idempotency-key': randomBytes(12).toString('hex') }).catch((error: unknown) => {
    throw new Error(`submit failed: ${(error as Error).message}: ${String((error as Error).cause)}`);
  });
  if (response.status !== 202) throw new Error(`submit answered ${response.status}: ${(await response.text()).slice(0, 2000)}`);
  return (await response.json()) as BatchJson;
}

/**
 * Runs the measurement against a server that knows both tenants' keys. The small batches are submitted one after
 * another, 100 ms apart, with distinct memories each time.
 */
export async function measureFairness(options: {
  busy: ApiClient;
  small: ApiClient;
  /** The busy tenant's server address and key, for the large uploads. */
  busyUrl: string;
  busyKey: string;
  orchestrator: FairnessRun['orchestrator'];
  mechanism: string;
  backlogBatches: number;
  backlogMemoriesPerBatch: number;
  smallMemories: number;
  tries: number;
  log: Log;
}): Promise<FairnessRun> {
  const { busy, small, backlogBatches, backlogMemoriesPerBatch, smallMemories, tries, log } = options;
  let corpusOffset = 0;
  const smallBody = () => {
    const lines: string[] = [];
    for (let i = 0; i < smallMemories; i++) lines.push(JSON.stringify(corpusMemory(corpusOffset + i)));
    corpusOffset += smallMemories;
    return lines.join('\n') + '\n';
  };
  const timedSmall = async () => {
    const body = smallBody();
    const start = performance.now();
    const accepted = await submit(small, body);
    const final = await waitForFinal(small, accepted.id, 600_000, 10);
    if (final.status !== 'completed') throw new Error(`small batch ${accepted.id} ended ${final.status}`);
    return performance.now() - start;
  };

  const alone: number[] = [];
  for (let i = 0; i < tries; i++) alone.push(await timedSmall());
  log(`  ${options.orchestrator}: ${smallMemories}-memory batch alone: p50 ${stats(alone).p50Ms.toFixed(0)} ms, p99 ${stats(alone).p99Ms.toFixed(0)} ms`);

  const chunks = backlogChunks(backlogMemoriesPerBatch);
  // The backlog's batches are uploaded one after another, and the small batches start once every one has been
  // accepted.
  const backlogStart = performance.now();
  const backlogIds: string[] = [];
  for (let b = 0; b < backlogBatches; b++) backlogIds.push(await submitLarge(options.busyUrl, options.busyKey, chunks));
  log(`  ${options.orchestrator}: backlog of ${backlogBatches} × ${backlogMemoriesPerBatch} accepted after ${((performance.now() - backlogStart) / 1000).toFixed(1)} s`);
  const backlogDone = Promise.all(backlogIds.map((id) => waitForFinal(busy, id, 1_800_000, 500))).then(() => performance.now());

  const underBacklog: number[] = [];
  for (let i = 0; i < tries; i++) {
    underBacklog.push(await timedSmall());
    await sleep(100);
  }
  const unfinished = (await Promise.all(backlogIds.map((id) => busy.get(id)))).filter((b) => !['completed', 'failed', 'cancelled'].includes(b.status)).length;
  const backlogSeconds = ((await backlogDone) - backlogStart) / 1000;
  const run: FairnessRun = {
    orchestrator: options.orchestrator,
    mechanism: options.mechanism,
    backlogBatches,
    backlogMemoriesPerBatch,
    smallMemories,
    alone: stats(alone),
    underBacklog: stats(underBacklog),
    underBacklogSamplesMs: underBacklog.map((ms) => Math.round(ms)),
    backlogUnfinishedAtEnd: unfinished,
    backlogSeconds,
  };
  log(
    `  ${options.orchestrator}: tries (ms): ${run.underBacklogSamplesMs.join(', ')}\n` +
    `  ${options.orchestrator}: under the backlog: p50 ${run.underBacklog.p50Ms.toFixed(0)} ms, p99 ${run.underBacklog.p99Ms.toFixed(0)} ms ` +
      `(${(run.underBacklog.p99Ms / run.alone.p99Ms).toFixed(1)}× alone); ${unfinished} of ${backlogBatches} backlog batches still running after the last try; backlog took ${backlogSeconds.toFixed(1)} s`,
  );
  return run;
}

/** The embedded measurement: a fresh `batchmem serve` on default settings with the two tenants' keys. */
export async function runEmbeddedFairness(options: { backlogBatches: number; backlogMemoriesPerBatch: number; smallMemories: number; tries: number; log: Log; env?: Record<string, string> }): Promise<FairnessRun> {
  const dir = mkdtempSync(join(tmpdir(), 'batchmem-bench-'));
  const keys = tenantKeys();
  const proc = await startProcess({ env: { BATCHMEM_DATA_DIR: dir, BATCHMEM_API_KEYS: JSON.stringify([keys.busy, keys.small]), BATCHMEM_LOG_LEVEL: 'warn', ...options.env } });
  try {
    return await measureFairness({
      ...options,
      busy: apiClient(proc.url, keys.busy.key),
      small: apiClient(proc.url, keys.small.key),
      busyUrl: proc.url,
      busyKey: keys.busy.key,
      orchestrator: 'embedded',
      mechanism: 'segments round-robin across tenants, then batches; per-tenant cap (src/app/fair-share.ts)',
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}; the server's last output: ${proc.output().slice(-1500)}`);
  } finally {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Section 8: embedded, then on Temporal (its figure is reported as not measured when its backends cannot start). */
export async function runFairness(options: { backlogBatches: number; backlogMemoriesPerBatch: number; smallMemories: number; tries: number; log: Log }): Promise<FairnessResult> {
  const runs: FairnessRun[] = [await runEmbeddedFairness(options)];
  const notMeasured: FairnessResult['notMeasured'] = [];
  try {
    runs.push(await runTemporalFairness(options));
  } catch (error) {
    options.log(`  temporal fairness could not be measured: ${(error as Error).stack ?? error}`);
    notMeasured.push({ orchestrator: 'temporal', reason: (error as Error).message.split('\n')[0]!.slice(0, 300) });
  }
  return { runs, notMeasured };
}

/**
 * The same on Temporal: the dev server container with task-queue fairness on (`matching.enableFairness`), an API
 * process and a `batchmem worker` on one embedded storage folder (SQLite, files), default settings.
 */
export async function runTemporalFairness(options: { backlogBatches: number; backlogMemoriesPerBatch: number; smallMemories: number; tries: number; log: Log }): Promise<FairnessRun> {
  const { startTemporal } = await import('../test/support/containers.ts');
  const temporal = await startTemporal({ extraArgs: ['--dynamic-config-value', 'matching.enableFairness=true'] });
  const dir = mkdtempSync(join(tmpdir(), 'batchmem-bench-'));
  const keys = tenantKeys();
  const env = {
    BATCHMEM_DATA_DIR: dir,
    BATCHMEM_API_KEYS: JSON.stringify([keys.busy, keys.small]),
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: `bench-fairness-${randomBytes(4).toString('hex')}`,
  };
  const api = await startProcess({ env: { ...env, BATCHMEM_LOG_LEVEL: 'warn' } });
  const worker = await startProcess({ command: 'worker', readyLine: 'temporal worker is polling', env: { ...env, BATCHMEM_LOG_LEVEL: 'info' } }).catch(async (error: unknown) => {
    await api.stop();
    throw error;
  });
  try {
    return await measureFairness({
      ...options,
      busy: apiClient(api.url, keys.busy.key),
      small: apiClient(api.url, keys.small.key),
      busyUrl: api.url,
      busyKey: keys.busy.key,
      orchestrator: 'temporal',
      mechanism: 'task-queue fairness key = organization on every workflow start and segment activity; server with matching.enableFairness',
    });
  } finally {
    await api.stop();
    await worker.stop();
    await temporal.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
