// The Temporal worker: polls the task queue, runs `processBatch` (bundled from workflows.ts by the SDK) and the
// activities, which call the use cases with this process's context.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, type LogLevel, NativeConnection, Runtime, Worker, type WorkerOptions, type WorkflowBundle } from '@temporalio/worker';
import type { Services, Settings } from '../services.ts';
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
  /**
   * OpenTelemetry: the process's span processor and resource (from the SDK). When given, workflows and activities
   * get Temporal's tracing interceptors (continuing the trace carried in the workflow's headers) and workflow spans,
   * made inside the sandbox, are exported through the processor. Needs a worker that bundles workflows.ts itself
   * (no `workflowBundle`), since the workflow interceptors are part of the bundle.
   */
  tracing?: { spanProcessor: unknown; resource: unknown } | undefined;
}

/** Temporal's OpenTelemetry interceptors and sink; the package is loaded only for a traced worker. */
async function tracingOptions(tracing: NonNullable<TemporalWorkerOptions['tracing']>): Promise<Pick<WorkerOptions, 'interceptors' | 'sinks'>> {
  const otel = await import('@temporalio/interceptors-opentelemetry');
  const workflowInterceptors = createRequire(import.meta.url).resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');
  return {
    interceptors: {
      workflowModules: [workflowInterceptors],
      activity: [(services) => ({ inbound: new otel.OpenTelemetryActivityInboundInterceptor(services), outbound: new otel.OpenTelemetryActivityOutboundInterceptor(services) })],
    },
    sinks: { exporter: otel.makeWorkflowExporter(tracing.spanProcessor as Parameters<typeof otel.makeWorkflowExporter>[0], tracing.resource as Parameters<typeof otel.makeWorkflowExporter>[1]) },
  };
}

/** The timings `processBatch` applies; see the comment at the top of workflows.ts for the reasoning. */
export function tuningFor(settings: Settings, options: Pick<TemporalWorkerOptions, 'segmentsPerRun' | 'webhookTimeoutMs' | 'tuning'>): Tuning {
  return {
    parallelism: settings.segmentConcurrency,
    segmentsPerRun: options.segmentsPerRun,
    segmentMaxAttempts: settings.segmentMaxAttempts,
    segmentStartToCloseMs: 5 * 60_000,
    segmentHeartbeatTimeoutMs: 20_000,
    segmentRetryInitialMs: settings.segmentRetryInitialMs,
    segmentRetryMaxMs: settings.segmentRetryMaxMs,
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

export async function createWorker(services: Services, options: TemporalWorkerOptions): Promise<TemporalWorker> {
  const connection = await NativeConnection.connect({ address: options.address });
  try {
    const tuning = tuningFor(services.settings, options);
    const batchConcurrency = options.batchConcurrency ?? 4;
    if (options.tracing && options.workflowBundle) throw new Error('a traced worker bundles its own workflow code: drop workflowBundle');
    const traced = options.tracing ? await tracingOptions(options.tracing) : {};
    const worker = await Worker.create({
      ...traced,
      connection,
      namespace: options.namespace,
      taskQueue: options.taskQueue,
      identity: options.identity,
      ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
      activities: createActivities(services, { workerId: options.identity, tuning }),
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

/** The little of a pino-style logger the SDK's messages are forwarded to. */
export interface LogSink {
  debug(meta: object, message: string): void;
  info(meta: object, message: string): void;
  warn(meta: object, message: string): void;
  error(meta: object, message: string): void;
}

/**
 * Sends the SDK's own log lines (worker state, workflow task failures) to the process logger. Call once, before
 * any worker or connection exists. The SDK logs each bundled module at INFO, so below debug it only passes warnings.
 */
export function installTemporalLogging(logger: LogSink, verbose = false): void {
  const methods: Record<LogLevel, keyof LogSink> = { TRACE: 'debug', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };
  Runtime.install({
    logger: new DefaultLogger(verbose ? 'DEBUG' : 'WARN', (entry) => {
      logger[methods[entry.level]]({ component: 'temporal', ...entry.meta }, entry.message);
    }),
  });
}

/** Runs a worker until it is shut down; resolves once running activities have finished or been cancelled. */
export async function runWorker(
  services: Services,
  options: TemporalWorkerOptions & { signal?: AbortSignal; onRunning?: () => void },
): Promise<void> {
  const { worker, run, shutdown } = await createWorker(services, options);
  options.onRunning?.();
  if (options.signal?.aborted) shutdown();
  options.signal?.addEventListener('abort', () => {
    if (worker.getState() === 'RUNNING') shutdown();
  }, { once: true });
  await run();
}
