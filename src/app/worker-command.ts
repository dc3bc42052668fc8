// `batchmem worker`: processes segments for the configured orchestrator.
import type { Config } from './config.ts';
import { createLogger } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { startTelemetry } from './telemetry.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';
import { type AdapterDecorators, buildContext, workerIdentity } from './wire.ts';

/**
 * How long running activities get to finish after SIGINT/SIGTERM before the SDK cancels them. A segment waiting on a
 * failing HTTP target does not notice its cancellation, so the sink's waiting requests are ended then too.
 */
const shutdownGraceMs = 30_000;

/** `decorate`: wrappers around the configured adapters (a test harness's seam; production passes none). */
export async function runWorkerCommand(config: Config, decorate?: AdapterDecorators): Promise<number> {
  if (config.BATCHMEM_ORCHESTRATOR === 'local') {
    process.stderr.write('with BATCHMEM_ORCHESTRATOR=local, `batchmem serve` runs the worker in-process; there is no separate worker\n');
    return 2;
  }
  const telemetry = await startTelemetry('batchmem-worker');
  const { installTemporalLogging, runWorker } = await import('./temporal/worker.ts');
  const logger = createLogger(config.BATCHMEM_LOG_LEVEL, undefined, { traceIds: telemetry !== undefined });
  installTemporalLogging(logger, config.BATCHMEM_LOG_LEVEL === 'debug' || config.BATCHMEM_LOG_LEVEL === 'trace');
  const metrics = createMetrics();
  const services = await buildContext(config, metrics, decorate);
  const identity = workerIdentity(config);
  let metricsServer: MetricsServer | undefined;
  if (config.BATCHMEM_WORKER_METRICS_PORT !== undefined) {
    metricsServer = await startMetricsServer(metrics.registry, config.BATCHMEM_WORKER_METRICS_PORT, config.BATCHMEM_HOST);
    logger.info({ port: metricsServer.port }, 'worker metrics listening');
  }
  const options = {
    address: config.TEMPORAL_ADDRESS,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    identity,
    segmentsPerRun: config.BATCHMEM_TEMPORAL_SEGMENTS_PER_RUN,
    batchConcurrency: config.BATCHMEM_BATCH_CONCURRENCY,
    webhookTimeoutMs: config.BATCHMEM_WEBHOOK_TIMEOUT_MS,
    tracing: telemetry,
  };
  logger.info({ identity, address: options.address, namespace: options.namespace, taskQueue: options.taskQueue }, 'temporal worker starting');
  // SIGINT and SIGTERM make the SDK stop polling and let running activities finish (graceful shutdown); past the
  // grace, the sink's requests still waiting on their target end, so that their activities end and the worker exits
  // (the segments are retried elsewhere, under the same Idempotency-Keys).
  let grace: NodeJS.Timeout | undefined;
  const interruptAfterGrace = () => {
    grace ??= setTimeout(() => void services.sink.interrupt?.(), shutdownGraceMs + 1_000).unref();
  };
  process.once('SIGTERM', interruptAfterGrace);
  process.once('SIGINT', interruptAfterGrace);
  try {
    await runWorker(services, {
      ...options,
      shutdownGraceTimeMs: shutdownGraceMs,
      onRunning: () => logger.info({ identity }, 'temporal worker is polling'),
    });
  } finally {
    clearTimeout(grace);
    process.off('SIGTERM', interruptAfterGrace);
    process.off('SIGINT', interruptAfterGrace);
    await Promise.allSettled([services.batches.close(), services.payloads.close(), services.sink.close(), metricsServer?.close()]);
    await telemetry?.shutdown();
  }
  logger.info({ identity }, 'temporal worker stopped');
  return 0;
}
