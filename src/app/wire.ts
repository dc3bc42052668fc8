// Builds the adapters that configuration names and the context the use cases run in.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SqliteBatchRepository } from '../adapters/local/batch-repository.ts';
import { SqliteMemorySink } from '../adapters/local/memory-sink.ts';
import { LocalOrchestrator } from './local-runner.ts';
import { FilePayloadStore } from '../adapters/local/payload-store.ts';
import { HttpWebhookNotifier } from '../adapters/webhook/notifier.ts';
import type { BatchRepository } from '../ports/batch-repository.ts';
import { systemClock } from '../ports/clock.ts';
import type { MemorySink } from '../ports/memory-sink.ts';
import type { Orchestrator } from '../ports/orchestrator.ts';
import type { PayloadStore } from '../ports/payload-store.ts';
import type { Config } from './config.ts';
import { loadApiKeys } from './api-keys.ts';
import type { ParseConnection } from '../adapters/parse/connection.ts';
import type { ParseSchemaSetup } from '../adapters/parse/schema-setup.ts';
import { defaultSettings, type Services, type OrchestratedServices, type Settings } from './services.ts';
import { defaultLevel } from '../domain/codec.ts';
import type { Logger } from './logger.ts';
import { expiryIntervalMs, scheduleExpiry } from './processing/expire-payloads.ts';
import type { Observer } from './observer.ts';
import type { Telemetry } from './telemetry.ts';
import { LeftoverPayloads, scheduleLeftoverSweep } from './processing/payload-leftovers.ts';
import { orphanSweepIntervalMs, scheduleOrphanSweep } from './processing/sweep-orphaned-uploads.ts';

export function settingsFrom(config: Config): Settings {
  return {
    codec: config.BATCHMEM_CODEC,
    codecLevel: config.BATCHMEM_CODEC_LEVEL ?? defaultLevel[config.BATCHMEM_CODEC],
    segmentMaxItems: config.BATCHMEM_SEGMENT_MAX_ITEMS,
    segmentMaxRawBytes: config.BATCHMEM_SEGMENT_MAX_BYTES,
    maxMemoriesPerBatch: config.BATCHMEM_MAX_MEMORIES,
    memoryLimits: {
      maxContentBytes: config.BATCHMEM_MAX_CONTENT_BYTES,
      maxMetadataBytes: config.BATCHMEM_MAX_METADATA_BYTES,
      maxMetadataDepth: config.BATCHMEM_MAX_METADATA_DEPTH,
    },
    allowPrivateWebhooks: config.BATCHMEM_ALLOW_PRIVATE_WEBHOOKS,
    segmentConcurrency: config.BATCHMEM_SEGMENT_CONCURRENCY,
    segmentMaxAttempts: config.BATCHMEM_SEGMENT_MAX_ATTEMPTS,
    segmentRetryInitialMs: defaultSettings.segmentRetryInitialMs,
    segmentRetryMaxMs: defaultSettings.segmentRetryMaxMs,
    webhookMaxAttempts: config.BATCHMEM_WEBHOOK_MAX_ATTEMPTS,
    webhookBaseDelayMs: config.BATCHMEM_WEBHOOK_BASE_DELAY_MS,
    webhookMaxDelayMs: config.BATCHMEM_WEBHOOK_MAX_DELAY_MS,
    watchIntervalMs: config.BATCHMEM_WATCH_INTERVAL_MS,
    dedupeWindowMs: config.BATCHMEM_DEDUPE_WINDOW,
  };
}

export function workerIdentity(config: Config): string {
  return config.BATCHMEM_WORKER_ID ?? `${hostname()}:${process.pid}`;
}

/** The one Parse Server connection of this process (the SDK is a singleton); loaded only when a Parse backend is chosen. */
export async function parseConnection(config: Config) {
  const { connectParse } = await import('../adapters/parse/connection.ts');
  return connectParse({
    serverURL: config.PARSE_SERVER_URL!,
    appId: config.PARSE_APP_ID!,
    masterKey: config.PARSE_MASTER_KEY!,
    javascriptKey: config.PARSE_JAVASCRIPT_KEY,
  });
}

/** The Parse connection and the schema preparation the Parse adapters of one context share; made on first use. */
type ParseBackend = () => Promise<{ connection: ParseConnection; schema: ParseSchemaSetup }>;

function parseBackend(config: Config): ParseBackend {
  let backend: ReturnType<ParseBackend> | undefined;
  return () =>
    (backend ??= (async () => {
      const connection = await parseConnection(config);
      const { ParseSchemaSetup } = await import('../adapters/parse/schema-setup.ts');
      const { postgresUniqueIndexes } = await import('../adapters/parse/migrate.ts');
      // Read by `batchmem migrate` only: roles for the configured keys' organizations (never the generated embedded
      // key), and unique indexes made in the database when its URL is given.
      const schema = new ParseSchemaSetup(connection, () => ({
        organizations: [...new Set((config.BATCHMEM_API_KEYS || config.BATCHMEM_API_KEYS_FILE ? loadApiKeys(config).keys : []).map((key) => key.organization))],
        uniqueIndexes: config.PARSE_DATABASE_URI ? postgresUniqueIndexes(config.PARSE_DATABASE_URI) : undefined,
        log: (line) => process.stdout.write(`parse: ${line}\n`),
      }));
      return { connection, schema };
    })());
}

async function batchRepository(config: Config, parse: ParseBackend): Promise<BatchRepository> {
  switch (config.BATCHMEM_STORE) {
    case 'sqlite':
      return new SqliteBatchRepository(join(config.BATCHMEM_DATA_DIR, 'batchmem.db'));
    case 'parse': {
      const { ParseBatchRepository } = await import('../adapters/parse/batch-repository.ts');
      const { connection, schema } = await parse();
      return new ParseBatchRepository(connection, schema);
    }
  }
}

async function payloadStore(config: Config, parse: ParseBackend): Promise<PayloadStore> {
  switch (config.BATCHMEM_PAYLOADS) {
    case 'file':
      return new FilePayloadStore(join(config.BATCHMEM_DATA_DIR, 'payloads'));
    case 's3': {
      // Loaded only when chosen, like every non-default backend: the embedded default stays small.
      const { S3PayloadStore } = await import('../adapters/s3/payload-store.ts');
      // Credentials come from the SDK's default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, profiles, roles).
      return new S3PayloadStore({
        bucket: config.BATCHMEM_S3_BUCKET!,
        region: config.BATCHMEM_S3_REGION,
        endpoint: config.BATCHMEM_S3_ENDPOINT,
        forcePathStyle: config.BATCHMEM_S3_FORCE_PATH_STYLE,
      });
    }
    case 'parse': {
      const { ParsePayloadStore } = await import('../adapters/parse/payload-store.ts');
      const { connection, schema } = await parse();
      return new ParsePayloadStore(connection, schema);
    }
  }
}

async function memorySink(config: Config, parse: ParseBackend, observer?: Observer): Promise<MemorySink> {
  switch (config.BATCHMEM_SINK) {
    case 'http': {
      const { httpSink } = await import('./http-sink.ts');
      return httpSink(config, observer);
    }
    case 'sqlite':
      return new SqliteMemorySink(join(config.BATCHMEM_DATA_DIR, 'memories.db'));
    case 'parse': {
      const { ParseMemorySink } = await import('../adapters/parse/memory-sink.ts');
      const { connection, schema } = await parse();
      return new ParseMemorySink(connection, { schema });
    }
  }
}

/**
 * Wrappers put around the adapters configuration chose, before anything uses them: the seam through which a
 * test harness wires the very same process with adapters of its own around the real ones (fault injection lives in
 * test support, not here). Each returns the port it was given or one that delegates to it.
 */
export interface AdapterDecorators {
  batches?(batches: BatchRepository): BatchRepository;
  payloads?(payloads: PayloadStore): PayloadStore;
  sink?(sink: MemorySink): MemorySink;
  /** Called as the process begins its graceful shutdown, before it waits for the work still running. */
  closing?(): void;
  /**
   * Functions cannot cross into the processing thread (src/app/processing-thread.ts): it imports this module (a file
   * URL) and wraps its own adapters with what the module's `adapterDecorators()` export returns.
   */
  module?: string;
}

/** The ports without an orchestrator: what a worker needs to process segments. */
export async function buildContext(config: Config, observer?: Observer, decorate: AdapterDecorators = {}): Promise<Services> {
  const parse = parseBackend(config);
  const [batches, payloads, sink] = await Promise.all([batchRepository(config, parse), payloadStore(config, parse), memorySink(config, parse, observer)]);
  return {
    batches: decorate.batches?.(batches) ?? batches,
    payloads: decorate.payloads?.(payloads) ?? payloads,
    sink: decorate.sink?.(sink) ?? sink,
    webhooks: new HttpWebhookNotifier({
      timeoutMs: config.BATCHMEM_WEBHOOK_TIMEOUT_MS,
      allowPrivate: config.BATCHMEM_ALLOW_PRIVATE_WEBHOOKS,
    }),
    clock: systemClock,
    settings: settingsFrom(config),
    observer,
  };
}

export interface Runtime {
  services: OrchestratedServices;
  /** Work to do once the process is up: the embedded orchestrator resumes unfinished batches. */
  startBackground(): Promise<void>;
  close(): Promise<void>;
}

/** The embedded orchestrator, running batches on the calling thread with the configured limits; failures are logged. */
export function localOrchestrator(config: Config, services: Services, logger: Logger, workerId: string): LocalOrchestrator {
  return new LocalOrchestrator(services, {
    workerId,
    batchConcurrency: config.BATCHMEM_BATCH_CONCURRENCY,
    tenantConcurrency: config.BATCHMEM_TENANT_CONCURRENCY,
    onError: (key, error) => logger.error({ batch: key, err: error }, 'batch run failed'),
    onSegmentError: (key, segment, attempt, error) =>
      logger.warn({ batch: key, segment, attempt, err: error }, 'segment attempt failed; retrying'),
  });
}

/** The embedded orchestrator on its own thread (src/app/processing-thread.ts), with this process's adapters' decorators. */
async function processingThread(config: Config, logger: Logger, observer: Observer | undefined, decorate: AdapterDecorators | undefined) {
  const hasDecorators = decorate && (decorate.batches || decorate.payloads || decorate.sink || decorate.closing);
  if (hasDecorators && !decorate.module) throw new Error('adapter decorators need a `module` for the processing thread to load them from');
  const { ProcessingThread } = await import('./processing-thread.ts');
  return ProcessingThread.open({
    data: { config, workerId: workerIdentity(config), decorators: decorate?.module, metrics: observer !== undefined },
    logger,
    observer,
  });
}

async function orchestrator(
  config: Config,
  services: Services,
  logger: Logger,
  telemetry: Telemetry | undefined,
  decorate: AdapterDecorators | undefined,
): Promise<{ orchestrator: Orchestrator; start(): Promise<void> }> {
  switch (config.BATCHMEM_ORCHESTRATOR) {
    case 'local': {
      const local = config.BATCHMEM_PROCESSING_THREAD
        ? await processingThread(config, logger, services.observer, decorate)
        : localOrchestrator(config, services, logger, workerIdentity(config));
      return {
        orchestrator: local,
        async start() {
          const resumed = await local.resume();
          if (resumed > 0) logger.info({ resumed }, 'resumed unfinished batches');
        },
      };
    }
    case 'temporal': {
      // Loaded only when chosen, so the embedded default never loads the Temporal SDK.
      const { TemporalOrchestrator } = await import('../adapters/temporal/orchestrator.ts');
      const temporal = await TemporalOrchestrator.connect({
        address: config.TEMPORAL_ADDRESS,
        namespace: config.TEMPORAL_NAMESPACE,
        taskQueue: config.TEMPORAL_TASK_QUEUE,
        tracing: telemetry !== undefined,
      });
      return {
        orchestrator: temporal,
        async start() {
          // A batch whose workflow could not be started (Temporal unreachable at submit) or whose run failed is
          // started now; for every other batch the start is a no-op (same workflow id, existing run).
          const keys = await services.batches.listNeedingWork(config.BATCHMEM_WEBHOOK_MAX_ATTEMPTS);
          for (const key of keys) {
            // From the record: the organization (the start's fairness key) and the redrive (its run's workflow id).
            const batch = await services.batches.get(key);
            await temporal.start(key, { organization: batch?.tenant.organization, redrive: batch?.redrives });
          }
          if (keys.length > 0) logger.info({ batches: keys.length }, 'checked unfinished batches have a workflow');
        },
      };
    }
  }
}

/** How often the API process retries deleting the segments of refused uploads it could not delete at once. */
const leftoverSweepIntervalMs = 60_000;

/** Everything the API process needs. */
export async function buildRuntime(
  config: Config,
  logger: Logger,
  observer?: Observer,
  telemetry?: Telemetry,
  decorate?: AdapterDecorators,
): Promise<Runtime> {
  const leftovers = new LeftoverPayloads({
    // The error names the keys still there; the segments of a refused upload hold no secret.
    left: (prefix, error) => logger.warn({ prefix, err: error }, 'could not delete the segments of a refused upload; a sweep will retry'),
    removed: (prefix, objects) => logger.info({ prefix, objects }, 'deleted the segments of a refused upload left behind earlier'),
  });
  const services: Services = { ...(await buildContext(config, observer, decorate)), leftovers };
  const retentionMs = config.BATCHMEM_PAYLOAD_RETENTION;
  const orchestration = await orchestrator(config, services, logger, telemetry, decorate);
  let expiry: { stop(): Promise<void> } | undefined;
  let orphans: { stop(): Promise<void> } | undefined;
  const leftoverSweep = scheduleLeftoverSweep(leftovers, services.payloads, leftoverSweepIntervalMs);
  return {
    services: { ...services, orchestrator: orchestration.orchestrator },
    async startBackground() {
      await orchestration.start();
      const graceMs = config.BATCHMEM_ORPHAN_GRACE;
      orphans = scheduleOrphanSweep(services, {
        graceMs,
        intervalMs: orphanSweepIntervalMs(graceMs),
        events: {
          // A prefix is the organization and a generated upload id: nothing secret.
          deleted: (prefix, objects) => {
            observer?.orphanedUploadDeleted?.();
            logger.info({ prefix, objects }, 'deleted the segments of an upload no batch points at (its process died)');
          },
          failed: (prefix, error) => logger.warn({ prefix, err: error }, 'could not delete an orphaned upload; the next sweep will retry'),
        },
        onSweep: (sweep) => {
          if (sweep.deleted > 0) logger.info({ uploads: sweep.deleted, objects: sweep.objects, folders: sweep.folders }, 'orphaned upload sweep done');
        },
        onError: (error) => logger.error({ err: error }, 'orphaned upload sweep failed'),
      });
      if (retentionMs === undefined) return;
      expiry = scheduleExpiry(services, {
        retentionMs,
        intervalMs: expiryIntervalMs(retentionMs),
        onSweep: (sweep) => {
          if (sweep.batches > 0) logger.info({ batches: sweep.batches, objects: sweep.objects }, 'deleted expired payloads');
          for (const failure of sweep.failures) logger.warn({ batch: failure.key, err: failure.error }, 'could not delete an expired payload; will retry');
        },
        onError: (error) => logger.error({ err: error }, 'payload expiry sweep failed'),
      });
    },
    async close() {
      decorate?.closing?.();
      await leftoverSweep.stop();
      await expiry?.stop();
      await orphans?.stop();
      await orchestration.orchestrator.close();
      await Promise.allSettled([services.batches.close(), services.payloads.close(), services.sink.close()]);
    },
  };
}
