// Measurements 4 and 5 on one Temporal dev server (and one S3 container), same corpus:
//   (a) naive: the memories in the workflow input (and each chunk again in an activity input);
//   (b) naive with Temporal External Storage on S3 (@temporalio/external-storage-s3), Temporal's own claim check;
//   (c) batchmem: `batchmem serve` with BATCHMEM_ORCHESTRATOR=temporal and S3 payloads, plus `batchmem worker`.
// Each design climbs a ladder of batch sizes until one does not complete. Every design writes the same SQLite
// sink, so the differences come from how the batch travels. One worker process per design runs the whole ladder;
// its VmHWM is reset before each batch, so the worker's peak RSS is that batch's.
import './protobufjs-dedupe.ts';
import { execFile } from 'node:child_process';
import { Agent, type BodyInit, fetch as undiciFetch } from 'undici';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { defaultSettings } from '../../src/app/services.ts';
import type { MemoryItem } from '../../src/domain/memory.ts';
import { apiClient } from '../../test/support/api-client.ts';
import { freePort } from '../../test/support/server-process.ts';
import { startPostgres, startS3, startTemporal, stopAllBackends, type S3Backend, type TemporalBackend } from '../../test/support/containers.ts';
import { connectParse, disconnectParse } from '../../src/adapters/parse/connection.ts';
import { ParseMemorySink } from '../../src/adapters/parse/memory-sink.ts';
import { corpus } from '../corpus.ts';
import { preparedBody, rawSinkRate, sinkRate, waitForFinal, type SinkRate } from '../embedded.ts';
import { benchApiKey, startProcess } from '../server.ts';
import { s3ExternalStorage } from './external-storage.ts';
import type { naiveIngest } from './naive-workflows.ts';

type Log = (line: string) => void;
const root = join(import.meta.dirname, '..', '..');

export type DesignName = 'naive' | 'naive + external storage (S3)' | 'batchmem';

export interface DesignRun {
  design: DesignName;
  memories: number;
  outcome: 'completed' | 'rejected' | 'failed';
  /** Why it did not complete, as the SDK or server said it. */
  error: string | null;
  /** The workflow input as recorded in the first run's history (or, if rejected, as the client would have sent it). */
  inputBytes: number;
  runs: number;
  longestHistoryEvents: number;
  longestHistoryBytes: number;
  /** Peak RSS of the worker process during this batch (VmHWM reset before it), or since start if reset failed. */
  workerPeakRssBytes: number;
  /** RSS of the worker process when it was ready, before its first batch. */
  workerIdleRssBytes: number;
  workerPeakIsPerBatch: boolean;
  seconds: number;
  secondsPer10k: number;
}

export interface TemporalThroughput {
  label: string;
  memories: number;
  memoriesPerSecond: number;
  /** The raw bulk-write rate of the same sink, same memories and segment sizes, measured in the same run. */
  sink: SinkRate;
  sinkLabel: string;
  ratio: number;
}

export interface TemporalResult {
  runs: DesignRun[];
  largestCompleted: Record<DesignName, number>;
  /** Temporal + S3 payloads + SQLite (from the batchmem design), and Temporal + Parse + S3. */
  throughput: TemporalThroughput[];
  /** Why a throughput row is missing. */
  throughputNotMeasured: { label: string; reason: string }[];
}

function payloadBytes(payload: Payload | undefined | null): number {
  if (!payload) return 0;
  let bytes = payload.data?.byteLength ?? 0;
  for (const [key, value] of Object.entries(payload.metadata ?? {})) bytes += key.length + (value?.byteLength ?? 0);
  return bytes;
}

interface HistoryStats {
  runs: number;
  inputBytes: number;
  longestHistoryEvents: number;
  longestHistoryBytes: number;
}

/** Walks the chain of runs back from the latest (continue-as-new), reading each run's history. */
async function historyStats(client: Client, workflowId: string): Promise<HistoryStats> {
  const stats: HistoryStats = { runs: 0, inputBytes: 0, longestHistoryEvents: 0, longestHistoryBytes: 0 };
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const handle: WorkflowHandle = client.workflow.getHandle(workflowId, runId);
    const [description, history] = await Promise.all([handle.describe(), handle.fetchHistory()]);
    const events = history.events ?? [];
    const started = events[0]?.workflowExecutionStartedEventAttributes;
    stats.runs += 1;
    stats.inputBytes = Math.max(stats.inputBytes, (started?.input?.payloads ?? []).reduce((sum, p) => sum + payloadBytes(p as Payload), 0));
    stats.longestHistoryEvents = Math.max(stats.longestHistoryEvents, events.length);
    stats.longestHistoryBytes = Math.max(stats.longestHistoryBytes, description.historySize ?? 0);
    runId = started?.continuedExecutionRunId || undefined;
  }
  return stats;
}

function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e && parts.length < 4; e = (e as { cause?: unknown }).cause) {
    const message = (e as Error).message ?? String(e);
    if (!parts.includes(message)) parts.push(`${(e as Error).name ?? 'Error'}: ${message}`);
  }
  return parts.join(' <- ').slice(0, 600);
}

function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'batchmem-bench-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

interface Backends {
  temporal: TemporalBackend;
  s3: S3Backend;
  s3Env: Record<string, string>;
}

async function createBucket(s3: S3Backend, bucket: string): Promise<void> {
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
}

// ---------------------------------------------------------------------------------------------------------------
// (a) and (b)

async function runNaive(backends: Backends, externalStorage: boolean, ladder: number[], log: Log): Promise<DesignRun[]> {
  const design: DesignName = externalStorage ? 'naive + external storage (S3)' : 'naive';
  const taskQueue = `bench-naive-${randomBytes(4).toString('hex')}`;
  const dir = tempDir();
  const bucket = `bench-extstore-${randomBytes(4).toString('hex')}`;
  const storage = externalStorage
    ? s3ExternalStorage({ endpoint: backends.s3.endpoint, region: backends.s3.region, bucket, accessKeyId: backends.s3.accessKeyId, secretAccessKey: backends.s3.secretAccessKey })
    : undefined;
  if (externalStorage) await createBucket(backends.s3, bucket);
  const worker = await startProcess({
    script: join(root, 'bench/temporal/naive-worker.ts'),
    readyLine: 'naive worker is polling',
    env: {
      BATCHMEM_DATA_DIR: dir.path,
      TEMPORAL_ADDRESS: backends.temporal.address,
      TEMPORAL_TASK_QUEUE: taskQueue,
      ...backends.s3Env,
      ...(externalStorage ? { BENCH_EXTERNAL_STORAGE_BUCKET: bucket } : {}),
    },
  });
  const idleRss = worker.memory().rssBytes;
  const connection = await Connection.connect({ address: backends.temporal.address });
  const client = new Client({ connection, ...(storage ? { dataConverter: { externalStorage: storage } } : {}) });
  const runs: DesignRun[] = [];
  try {
    for (const count of ladder) {
      const memories: MemoryItem[] = [...corpus(count)];
      const input = {
        batchKey: `bench:naive-${count}-${randomBytes(4).toString('hex')}`,
        memories,
        chunkSize: defaultSettings.segmentMaxItems,
        parallelism: defaultSettings.segmentConcurrency,
      };
      const workflowId = `naive-${randomBytes(6).toString('hex')}`;
      const perBatch = worker.resetPeak();
      const start = performance.now();
      let outcome: DesignRun['outcome'] = 'completed';
      let error: string | null = null;
      let started = false;
      try {
        const handle = await client.workflow.start<typeof naiveIngest>('naiveIngest', {
          taskQueue,
          workflowId,
          args: [input],
          workflowExecutionTimeout: '20 minutes',
        });
        started = true;
        const result = await handle.result();
        if (result.written !== count) throw new Error(`wrote ${result.written} of ${count}`);
      } catch (cause) {
        outcome = started ? 'failed' : 'rejected';
        error = describeError(cause);
      }
      const seconds = (performance.now() - start) / 1000;
      const history = started
        ? await historyStats(client, workflowId)
        : { runs: 0, inputBytes: payloadBytes(defaultPayloadConverter.toPayload(input)), longestHistoryEvents: 0, longestHistoryBytes: 0 };
      const run: DesignRun = {
        design,
        memories: count,
        outcome,
        error,
        ...history,
        workerPeakRssBytes: worker.memory().peakRssBytes,
        workerIdleRssBytes: idleRss,
        workerPeakIsPerBatch: perBatch,
        seconds,
        secondsPer10k: (seconds / count) * 10_000,
      };
      runs.push(run);
      log(`  ${design} N=${count}: ${outcome} in ${seconds.toFixed(1)} s, input ${run.inputBytes} B, history ${run.longestHistoryEvents} events, worker peak ${(run.workerPeakRssBytes / 2 ** 20).toFixed(0)} MiB${error ? ` (${error.slice(0, 160)})` : ''}`);
      if (outcome !== 'completed') break;
    }
  } finally {
    await connection.close();
    await worker.stop();
    dir.remove();
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------------------------
// (c)

/**
 * Submits an NDJSON body on a connection of its own and returns the accepted batch. Building a large body keeps this
 * process busy for seconds, during which the server closes the idle keep-alive connections of the earlier polls
 * (after 5 s); writing a POST body to such a connection fails with EPIPE before the close is noticed (as in
 * bench/fairness.ts).
 */
async function submitFresh(url: string, key: string, body: ReadableStream<Uint8Array>): Promise<unknown> {
  const dispatcher = new Agent();
  try {
    const response = await undiciFetch(`${url}/v1/memory/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
      // The web stream of Node's own fetch and undici's are the same class under two type declarations.
      body: body as unknown as BodyInit,
      duplex: 'half',
      dispatcher,
    });
    const text = await response.text();
    if (response.status !== 202) throw new Error(`submit answered ${response.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text);
  } finally {
    await dispatcher.close();
  }
}

async function runBatchmem(backends: Backends, ladder: number[], log: Log): Promise<DesignRun[]> {
  const dir = tempDir();
  const key = benchApiKey();
  const env = {
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_API_KEYS: JSON.stringify([key]),
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: backends.temporal.address,
    TEMPORAL_TASK_QUEUE: `bench-batchmem-${randomBytes(4).toString('hex')}`,
    BATCHMEM_PAYLOADS: 's3',
    BATCHMEM_S3_BUCKET: `bench-batchmem-${randomBytes(4).toString('hex')}`,
    BATCHMEM_S3_ENDPOINT: backends.s3.endpoint,
    BATCHMEM_S3_REGION: backends.s3.region,
    BATCHMEM_S3_FORCE_PATH_STYLE: 'true',
    ...backends.s3Env,
  };
  // `batchmem migrate` creates the bucket, as a user would run it.
  await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
  const worker = await startProcess({ command: 'worker', readyLine: 'temporal worker is polling', env: { ...env, BATCHMEM_LOG_LEVEL: 'info' } });
  const api = await startProcess({ env: { ...env, BATCHMEM_LOG_LEVEL: 'warn' } });
  const idleRss = worker.memory().rssBytes;
  const http = apiClient(api.url, key.key);
  const connection = await Connection.connect({ address: backends.temporal.address });
  const client = new Client({ connection });
  const runs: DesignRun[] = [];
  try {
    for (const count of ladder) {
      const body = await preparedBody(count);
      const perBatch = worker.resetPeak();
      const start = performance.now();
      let outcome: DesignRun['outcome'] = 'completed';
      let error: string | null = null;
      let workflowId: string | null = null;
      try {
        const accepted = (await submitFresh(api.url, key.key, body.open())) as { id: string; workflow_id: string | null };
        workflowId = accepted.workflow_id;
        const done = await waitForFinal(http, accepted.id, 30 * 60_000, 100);
        workflowId = done.workflow_id;
        if (done.status !== 'completed' || done.request_counts.succeeded !== count) {
          throw new Error(`batch ended ${done.status} with ${JSON.stringify(done.request_counts)}: ${done.error ?? ''}`);
        }
      } catch (cause) {
        outcome = workflowId ? 'failed' : 'rejected';
        error = describeError(cause);
      }
      const seconds = (performance.now() - start) / 1000;
      body.remove();
      const history = workflowId ? await historyStats(client, workflowId) : { runs: 0, inputBytes: 0, longestHistoryEvents: 0, longestHistoryBytes: 0 };
      const run: DesignRun = {
        design: 'batchmem',
        memories: count,
        outcome,
        error,
        ...history,
        workerPeakRssBytes: worker.memory().peakRssBytes,
        workerIdleRssBytes: idleRss,
        workerPeakIsPerBatch: perBatch,
        seconds,
        secondsPer10k: (seconds / count) * 10_000,
      };
      runs.push(run);
      log(`  batchmem N=${count}: ${outcome} in ${seconds.toFixed(1)} s, input ${run.inputBytes} B, ${run.runs} run(s), longest history ${run.longestHistoryEvents} events, worker peak ${(run.workerPeakRssBytes / 2 ** 20).toFixed(0)} MiB${error ? ` (${error.slice(0, 160)})` : ''}`);
      if (outcome !== 'completed') break;
    }
  } finally {
    await connection.close();
    await api.stop();
    await worker.stop();
    dir.remove();
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------------------------
// Temporal + Parse + S3: batch records and memories on Parse Server 9 (on the PostgreSQL container), payloads on
// S3, orchestration on Temporal; against the raw rate of ParseMemorySink.writeSegment on the same Parse Server.

async function runParseStack(backends: Backends, count: number, log: Log): Promise<TemporalThroughput> {
  const postgres = await startPostgres();
  const files = tempDir();
  const dir = tempDir();
  const parse = { port: await freePort(), appId: `bench-${randomBytes(4).toString('hex')}`, masterKey: randomBytes(24).toString('hex') };
  const serverURL = `http://127.0.0.1:${parse.port}/parse`;
  // Parse Server in its own process (the development script the docs describe), so it competes with the API,
  // the worker and this process the way a separate server would.
  const parseServer = await startProcess({
    script: join(root, 'scripts/parse-dev-server.ts'),
    readyLine: 'Parse Server ready',
    env: {
      PARSE_DATABASE_URI: postgres.url,
      PARSE_DEV_PORT: String(parse.port),
      PARSE_DEV_FILES_DIR: files.path,
      PARSE_APP_ID: parse.appId,
      PARSE_MASTER_KEY: parse.masterKey,
    },
  });
  const key = benchApiKey();
  const env = {
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_API_KEYS: JSON.stringify([key]),
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: backends.temporal.address,
    TEMPORAL_TASK_QUEUE: `bench-parse-${randomBytes(4).toString('hex')}`,
    BATCHMEM_STORE: 'parse',
    BATCHMEM_SINK: 'parse',
    BATCHMEM_PAYLOADS: 's3',
    PARSE_SERVER_URL: serverURL,
    PARSE_APP_ID: parse.appId,
    PARSE_MASTER_KEY: parse.masterKey,
    PARSE_DATABASE_URI: postgres.url,
    BATCHMEM_S3_BUCKET: `bench-parse-${randomBytes(4).toString('hex')}`,
    BATCHMEM_S3_ENDPOINT: backends.s3.endpoint,
    BATCHMEM_S3_REGION: backends.s3.region,
    BATCHMEM_S3_FORCE_PATH_STYLE: 'true',
    ...backends.s3Env,
  };
  let worker: Awaited<ReturnType<typeof startProcess>> | undefined;
  let api: Awaited<ReturnType<typeof startProcess>> | undefined;
  try {
    await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    });
    // The storage limit first: the same Parse sink, records built beforehand, from this process.
    const sink = await sinkRate(count, new ParseMemorySink(connectParse({ serverURL, appId: parse.appId, masterKey: parse.masterKey })), 'bench:raw-parse-sink');
    log(`  raw Parse sink: ${count} memories in ${sink.seconds.toFixed(1)} s (${Math.round(sink.memoriesPerSecond)}/s)`);

    worker = await startProcess({ command: 'worker', readyLine: 'temporal worker is polling', env: { ...env, BATCHMEM_LOG_LEVEL: 'info' } });
    api = await startProcess({ env: { ...env, BATCHMEM_LOG_LEVEL: 'warn' } });
    const http = apiClient(api.url, key.key);
    const body = await preparedBody(count);
    const start = performance.now();
    const accepted = (await submitFresh(api.url, key.key, body.open())) as { id: string };
    body.remove();
    const done = await waitForFinal(http, accepted.id, 60 * 60_000, 100);
    const seconds = (performance.now() - start) / 1000;
    if (done.status !== 'completed' || done.request_counts.succeeded !== count) {
      throw new Error(`batch ended ${done.status} with ${JSON.stringify(done.request_counts)}: ${done.error ?? ''}`);
    }
    const memoriesPerSecond = count / seconds;
    log(`  Temporal + Parse + S3: ${count} memories in ${seconds.toFixed(1)} s (${Math.round(memoriesPerSecond)}/s), ratio ${(memoriesPerSecond / sink.memoriesPerSecond).toFixed(2)}`);
    return {
      label: 'Temporal + Parse (records and sink) + S3 payloads',
      memories: count,
      memoriesPerSecond,
      sink,
      sinkLabel: 'ParseMemorySink',
      ratio: memoriesPerSecond / sink.memoriesPerSecond,
    };
  } finally {
    await api?.stop();
    await worker?.stop();
    disconnectParse();
    await parseServer.stop();
    files.remove();
    dir.remove();
  }
}

// ---------------------------------------------------------------------------------------------------------------

export async function runTemporal(options: {
  naiveLadder: number[];
  externalStorageLadder: number[];
  batchmemLadder: number[];
  parseMemories: number;
  log: Log;
}): Promise<TemporalResult> {
  const [temporal, s3] = await Promise.all([startTemporal(), startS3()]);
  const backends: Backends = {
    temporal,
    s3,
    s3Env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, BENCH_S3_ENDPOINT: s3.endpoint, BENCH_S3_REGION: s3.region },
  };
  try {
    const naive = await runNaive(backends, false, options.naiveLadder, options.log);
    const external = await runNaive(backends, true, options.externalStorageLadder, options.log);
    const batchmem = await runBatchmem(backends, options.batchmemLadder, options.log);
    const runs = [...naive, ...external, ...batchmem];
    const largest = (design: DesignName) =>
      Math.max(0, ...runs.filter((r) => r.design === design && r.outcome === 'completed').map((r) => r.memories));

    // Throughput on Temporal: the largest completed batchmem run against the raw rate of the same sink.
    const throughput: TemporalThroughput[] = [];
    const throughputNotMeasured: TemporalResult['throughputNotMeasured'] = [];
    const best = batchmem.filter((r) => r.outcome === 'completed').at(-1);
    if (best) {
      const sink = await rawSinkRate(best.memories);
      const memoriesPerSecond = best.memories / best.seconds;
      throughput.push({
        label: 'Temporal + S3 payloads + SQLite records and sink',
        memories: best.memories,
        memoriesPerSecond,
        sink,
        sinkLabel: 'SqliteMemorySink',
        ratio: memoriesPerSecond / sink.memoriesPerSecond,
      });
      options.log(`  Temporal throughput at ${best.memories}: ${Math.round(memoriesPerSecond)}/s vs raw sink ${Math.round(sink.memoriesPerSecond)}/s = ${(memoriesPerSecond / sink.memoriesPerSecond).toFixed(2)}`);
    } else {
      throughputNotMeasured.push({ label: 'Temporal + S3 payloads + SQLite', reason: 'no batchmem run on Temporal completed' });
    }
    try {
      throughput.push(await runParseStack(backends, options.parseMemories, options.log));
    } catch (error) {
      options.log(`  Temporal + Parse + S3 could not be measured: ${(error as Error).stack}`);
      throughputNotMeasured.push({ label: 'Temporal + Parse + S3', reason: describeError(error) });
    }
    return {
      runs,
      largestCompleted: { naive: largest('naive'), 'naive + external storage (S3)': largest('naive + external storage (S3)'), batchmem: largest('batchmem') },
      throughput,
      throughputNotMeasured,
    };
  } finally {
    await stopAllBackends();
  }
}
