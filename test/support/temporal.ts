// Builds a context on embedded storage (SQLite records and sink, file payloads) orchestrated by Temporal: the
// TemporalOrchestrator on a real dev server, plus an in-process Temporal Worker running processBatch.
import { join } from 'node:path';
import { type Client, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundle } from '@temporalio/worker';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { SqliteMemorySink } from '../../src/adapters/local/memory-sink.ts';
import { FilePayloadStore } from '../../src/adapters/local/payload-store.ts';
import { connectClient, TemporalOrchestrator } from '../../src/adapters/temporal/orchestrator.ts';
import { type BatchProgress, progressQuery } from '../../src/ports/batch-workflow.ts';
import type { Tuning } from '../../src/app/temporal/activities.ts';
import { createWorker, type TemporalWorker, workflowsPath } from '../../src/app/temporal/worker.ts';
import { HttpWebhookNotifier } from '../../src/adapters/webhook/notifier.ts';
import { type Services, defaultSettings, type OrchestratedServices, type Settings } from '../../src/app/services.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import { type Batch, isFinal, workflowIdFor } from '../../src/domain/batch.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA, uniqueId } from './batches.ts';
import type { TemporalBackend } from './containers.ts';
import { tempDir } from './local-context.ts';
import { serverProcess, type ServerProcess } from './server-process.ts';

let runtimeInstalled = false;

/**
 * The SDK logs every bundled module at INFO; a test run needs warnings only, one line each, and not the expected
 * failures of fault-injection tests. Call before any worker starts.
 */
export function quietTemporalRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    const logger = new DefaultLogger('WARN', ({ level, message, meta }) => {
      const error = meta?.error === undefined ? '' : String((meta.error as Error).message ?? meta.error);
      if (error.includes('injected fault')) return;
      console.error(`[temporal sdk] ${level} ${message}${error ? `: ${error}` : ''}`);
    });
    Runtime.install({ logger });
  } catch {
    // Already installed in this process.
  }
}

let bundle: Promise<WorkflowBundle> | undefined;

/** workflows.ts bundled once per test process (webpack takes seconds), shared by its workers and replays. */
export function workflowBundle(): Promise<WorkflowBundle> {
  quietTemporalRuntime();
  bundle ??= bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  return bundle;
}

export interface TemporalFixtureOptions {
  settings?: Partial<Settings>;
  segmentsPerRun?: number;
  tuning?: Partial<Tuning>;
  /** Wraps the sink the workers write to (fault injection). */
  wrapSink?: (sink: MemorySink) => MemorySink;
  /** Identities of the in-process workers to start; one by default, none for a client-only context. */
  workers?: string[];
  /** Reuse the storage of another fixture (a second process's view) instead of a fresh folder. */
  dataDir?: string;
}

export interface TemporalFixture {
  services: OrchestratedServices;
  orchestrator: TemporalOrchestrator;
  /** The Temporal client the orchestrator uses, for reading workflows directly (histories, results, queries). */
  client: Client;
  /** The batch's workflow as Temporal describes it; undefined when it has none. */
  describe(batchKey: string): Promise<{ workflowId: string; running: boolean } | undefined>;
  /** The live progress the running workflow answers to its query; undefined when no run of the batch is open. */
  progress(batchKey: string): Promise<BatchProgress | undefined>;
  taskQueue: string;
  dataDir: string;
  workers: TemporalWorker[];
  /** Starts one more in-process worker on the same storage and task queue. */
  addWorker(identity: string): Promise<TemporalWorker>;
  close(): Promise<void>;
}

export async function temporalFixture(temporal: TemporalBackend, options: TemporalFixtureOptions = {}): Promise<TemporalFixture> {
  quietTemporalRuntime();
  const dir = options.dataDir ? undefined : tempDir();
  const dataDir = options.dataDir ?? dir!.path;
  const sink = new SqliteMemorySink(join(dataDir, 'memories.db'));
  const base: Services = {
    batches: new SqliteBatchRepository(join(dataDir, 'batchmem.db')),
    payloads: new FilePayloadStore(join(dataDir, 'payloads')),
    sink,
    webhooks: new HttpWebhookNotifier({ timeoutMs: 2000, allowPrivate: true }),
    clock: systemClock,
    settings: { ...defaultSettings, ...options.settings },
  };
  const workerCtx: Services = { ...base, sink: options.wrapSink ? options.wrapSink(sink) : sink };
  const taskQueue = uniqueId('batchmem');
  const target = { address: temporal.address, namespace: temporal.namespace, taskQueue };
  const client = await connectClient(target);
  const orchestrator = new TemporalOrchestrator(client, { taskQueue, ownsConnection: true });
  const workers: TemporalWorker[] = [];
  const runs: Promise<void>[] = [];
  const addWorker = async (identity: string) => {
    const worker = await createWorker(workerCtx, {
      ...target,
      identity,
      segmentsPerRun: options.segmentsPerRun ?? 500,
      tuning: { segmentHeartbeatTimeoutMs: 5000, segmentRetryInitialMs: 200, segmentRetryMaxMs: 2000, ...options.tuning },
      workflowBundle: await workflowBundle(),
      shutdownGraceTimeMs: 5000,
    });
    workers.push(worker);
    runs.push(worker.run().catch((error: unknown) => console.error(`[temporal] worker ${identity} failed:`, error)));
    return worker;
  };
  for (const identity of options.workers ?? ['test-worker-1']) await addWorker(identity);
  return {
    services: { ...base, orchestrator },
    orchestrator,
    client,
    describe: (batchKey) => describeWorkflow(client, batchKey),
    progress: (batchKey) => workflowProgress(client, batchKey),
    taskQueue,
    dataDir,
    workers,
    addWorker,
    async close() {
      for (const worker of workers) if (worker.worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(runs);
      await orchestrator.close();
      await base.batches.close();
      await sink.close();
      dir?.remove();
    },
  };
}

/** A batch's workflow as Temporal describes it: its id and whether a run is open; undefined when it has none. */
export async function describeWorkflow(client: Client, batchKey: string): Promise<{ workflowId: string; running: boolean } | undefined> {
  const workflowId = workflowIdFor(batchKey);
  try {
    const description = await client.workflow.getHandle(workflowId).describe();
    return { workflowId, running: description.status.name === 'RUNNING' };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}

/** The progress query of the batch's open workflow run; undefined when no run is open. */
export async function workflowProgress(client: Client, batchKey: string): Promise<BatchProgress | undefined> {
  try {
    return await client.workflow.getHandle(workflowIdFor(batchKey)).query(progressQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}

/** A context whose orchestrator records starts without starting anything: submit now, start the workflow later. */
export function withoutStarting(services: OrchestratedServices): OrchestratedServices {
  return {
    ...services,
    orchestrator: {
      start: async (key) => ({ workflowId: `batch-${key}` }),
      cancel: async () => undefined,
      redeliver: async () => undefined,
      check: async () => undefined,
      close: async () => undefined,
    },
  };
}

export interface SubmitDirectOptions {
  batchId?: string;
  webhookUrl?: string;
  webhookSecret?: string;
  /** Builds memory `index`; short chat-like memories by default. */
  make?: (index: number) => unknown;
}

/** Submits `count` memories through the submit use case (no HTTP), as the API would. */
export async function submitDirect(services: OrchestratedServices, count: number, options: SubmitDirectOptions = {}): Promise<Batch> {
  const make = options.make ?? ((i: number) => ({ content: `memory ${i}: the user prefers option ${i % 7}`, external_id: `e${i}` }));
  async function* items() {
    for (let i = 0; i < count; i += 1) yield make(i);
  }
  const batchId = options.batchId ?? uniqueId();
  const result = await submitBatch(services, {
    tenant: tenantA,
    requestId: uniqueId('req'),
    items: items(),
    options: () => ({ batchId, webhookUrl: options.webhookUrl, webhookSecret: options.webhookSecret }),
  });
  if (!result.ok) throw new Error(result.error.detail);
  return result.value.batch;
}

export async function settle(services: Services, key: string, timeoutMs = 240_000): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await services.batches.get(key);
    if (batch && isFinal(batch.status)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${key} is still ${batch?.status} (${JSON.stringify(batch?.counts)}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

export interface RunHistory {
  runId: string;
  history: History;
  events: number;
  /** History size in bytes as the server counts it (its limit is 50 MiB). */
  bytes: number;
}

/** The histories of every run of a workflow, first to last, walking back from the latest along continue-as-new. */
export async function runHistories(client: Client, workflowId: string): Promise<RunHistory[]> {
  const runs: RunHistory[] = [];
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const handle = client.workflow.getHandle(workflowId, runId);
    const history: History = await handle.fetchHistory();
    const events = history.events ?? [];
    const bytes = (await handle.describe()).historySize ?? 0;
    runs.unshift({ runId, history, events: events.length, bytes });
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return runs;
}

/** Bytes of a run's input: the payload data (JSON) and its metadata (encoding name). */
export function inputBytes(run: RunHistory): { data: number; withMetadata: number } {
  const payload = run.history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) throw new Error('the history has no workflow input');
  const data = payload.data?.byteLength ?? 0;
  const metadata = Object.entries(payload.metadata ?? {}).reduce((sum, [key, value]) => sum + key.length + (value?.byteLength ?? 0), 0);
  return { data, withMetadata: data + metadata };
}

/**
 * Starts `batchmem worker` as a child process and resolves once it polls the task queue (bundling the workflow code
 * takes seconds). Throws with the process output if it exits or does not poll within the timeout.
 */
export async function startWorkerProcess(env: Record<string, string>, identity: string, timeoutMs = 120_000): Promise<ServerProcess> {
  const worker = await serverProcess({ ...env, BATCHMEM_WORKER_ID: identity }, 'worker');
  await worker.start();
  const deadline = Date.now() + timeoutMs;
  while (!worker.output().includes('temporal worker is polling')) {
    if (Date.now() > deadline || worker.output().includes('"temporal worker stopped"') || /\n\s+at /.test(worker.output())) {
      await worker.stop();
      throw new Error(`worker ${identity} did not start polling:\n${worker.output().slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return worker;
}
