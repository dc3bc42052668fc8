// The Temporal worker: polls the task queue, runs `processBatch` (bundled from workflows.ts by the SDK) and the
// activities, which call the use cases with this process's context.
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import type { Context, Settings } from '../../app/context.ts';
import { createActivities, type Tuning } from './activities.ts';

export const workflowsPath = fileURLToPath(new URL('./workflows.ts', import.meta.url));

export interface TemporalWorkerOptions {
  address: string;
  namespace: string;
  taskQueue: string;
  /** Temporal worker identity; also recorded as the worker of each segment it processes. */
  identity: string;
  /** BATCHMEM_TEMPORAL_SEGMENTS_PER_RUN. */
  segmentsPerRun: number;
  /** Batches this worker works on at once (each with `segmentConcurrency` segments in flight). */
  batchConcurrency?: number;
  webhookTimeoutMs?: number;
  /** Overrides of the derived timings (tests shorten the heartbeat timeout). */
  tuning?: Partial<Tuning>;
  /** Prebuilt workflow code (`bundleWorkflowCode`); without it the worker bundles workflows.ts at start. */
  workflowBundle?: WorkflowBundle;
  /** How long running activities get to finish on shutdown before they are cancelled. */
  shutdownGraceTimeMs?: number;
}

/** The timings `processBatch` applies; see the comment at the top of workflows.ts for the reasoning. */
export function tuningFor(settings: Settings, options: Pick<TemporalWorkerOptions, 'segmentsPerRun' | 'webhookTimeoutMs' | 'tuning'>): Tuning {
  return {
    parallelism: settings.segmentConcurrency,
    segmentsPerRun: options.segmentsPerRun,
    segmentMaxAttempts: settings.segmentMaxAttempts,
    segmentStartToCloseMs: 5 * 60_000,
    segmentHeartbeatTimeoutMs: 20_000,
    segmentRetryInitialMs: 1000,
    segmentRetryMaxMs: 30_000,
    webhookMaxAttempts: settings.webhookMaxAttempts,
    webhookBaseDelayMs: settings.webhookBaseDelayMs,
    webhookMaxDelayMs: settings.webhookMaxDelayMs,
    webhookStartToCloseMs: (options.webhookTimeoutMs ?? 10_000) + 30_000,
    ...options.tuning,
  };
}

export interface TemporalWorker {
  worker: Worker;
  /** Runs until `shutdown()` (or SIGINT/SIGTERM, which the SDK turns into a graceful shutdown). */
  run(): Promise<void>;
  shutdown(): void;
}

export async function createWorker(ctx: Context, options: TemporalWorkerOptions): Promise<TemporalWorker> {
  const connection = await NativeConnection.connect({ address: options.address });
  try {
    const tuning = tuningFor(ctx.settings, options);
    const batchConcurrency = options.batchConcurrency ?? 4;
    const worker = await Worker.create({
      connection,
      namespace: options.namespace,
      taskQueue: options.taskQueue,
      identity: options.identity,
      ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
      activities: createActivities(ctx, { workerId: options.identity, tuning }),
      // Each batch keeps `parallelism` segments in flight, plus its begin/finalize/webhook steps.
      maxConcurrentActivityTaskExecutions: batchConcurrency * (tuning.parallelism + 1),
      shutdownGraceTime: options.shutdownGraceTimeMs ?? 30_000,
    });
    return {
      worker,
      run: async () => {
        try {
          await worker.run();
        } finally {
          await connection.close();
        }
      },
      shutdown: () => worker.shutdown(),
    };
  } catch (error) {
    await connection.close();
    throw error;
  }
}

/** Runs a worker until it is shut down; resolves once running activities have finished or been cancelled. */
export async function runWorker(ctx: Context, options: TemporalWorkerOptions & { signal?: AbortSignal }): Promise<void> {
  const { worker, run, shutdown } = await createWorker(ctx, options);
  if (options.signal?.aborted) shutdown();
  options.signal?.addEventListener('abort', () => {
    if (worker.getState() === 'RUNNING') shutdown();
  }, { once: true });
  await run();
}
