// Configuration from the environment, validated once at start. A bad value stops the process with a clear message.
import { z } from 'zod';
import { codecs } from '../domain/codec.ts';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

export const apiKeySchema = z.strictObject({
  key: z.string().min(16, 'an API key needs at least 16 characters'),
  organization: z.string().min(1).max(128),
  namespace: z.string().min(1).max(128).default('default'),
  user: z.string().min(1).max(128),
  workspace: z.string().min(1).max(128).default('default'),
});
export type ApiKey = z.infer<typeof apiKeySchema>;

const duration = z
  .string()
  .regex(/^\d+(ms|s|m|h|d)$/, 'use a number and a unit: ms, s, m, h or d (for example 7d)')
  .transform((value) => {
    const amount = Number.parseInt(value, 10);
    const unit = value.replace(/^\d+/, '');
    const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit]!;
    return amount * factor;
  });

export const configSchema = z.object({
  BATCHMEM_PORT: int(0, 65535).default(8787),
  BATCHMEM_HOST: z.string().default('0.0.0.0'),
  // A connection that sends and receives nothing for this long is closed (an upload that stalled, a client gone).
  BATCHMEM_IDLE_TIMEOUT_MS: int(1000).default(120_000),
  BATCHMEM_DATA_DIR: z.string().default('./data'),
  BATCHMEM_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BATCHMEM_STORE: z.enum(['sqlite', 'parse']).default('sqlite'),
  BATCHMEM_PAYLOADS: z.enum(['file', 'parse', 's3']).default('file'),
  BATCHMEM_SINK: z.enum(['sqlite', 'parse', 'http']).default('sqlite'),
  // BATCHMEM_SINK=http: forward every memory to another memory service (docs/pipeline-sink.md).
  // The sink speaks HTTP only: any other scheme would be accepted here and fail on every request.
  BATCHMEM_SINK_URL: z.url({ protocol: /^https?$/, error: 'use an http:// or https:// URL' }).optional(),
  BATCHMEM_SINK_FORMAT: z.enum(['papr', 'ndjson']).default('papr'),
  BATCHMEM_SINK_API_KEY: z.string().min(1).optional(),
  BATCHMEM_SINK_SECRET: z.string().regex(/^whsec_[A-Za-z0-9+/=]+$/, 'use a Standard Webhooks secret: whsec_ and base64').optional(),
  BATCHMEM_SINK_CHUNK: int(1, 10_000).optional(),
  BATCHMEM_SINK_CONCURRENCY: int(1, 256).default(8),
  BATCHMEM_SINK_RATE: int(0).default(0),
  BATCHMEM_SINK_TIMEOUT_MS: int(100).default(30_000),
  BATCHMEM_SINK_MAX_RETRY_AFTER: duration.default(60_000),
  BATCHMEM_SINK_OUTAGE_TOLERANCE: duration.default(600_000),
  BATCHMEM_SINK_BREAKER_FAILURES: int(1).default(5),
  BATCHMEM_SINK_BREAKER_PAUSE: duration.default(2_000),
  BATCHMEM_ORCHESTRATOR: z.enum(['local', 'temporal']).default('local'),
  BATCHMEM_API_KEYS: z.string().optional(),
  BATCHMEM_API_KEYS_FILE: z.string().optional(),
  BATCHMEM_CODEC: z.enum(codecs).default('zstd'),
  BATCHMEM_CODEC_LEVEL: int(-7, 22).optional(),
  BATCHMEM_SEGMENT_MAX_ITEMS: int(1, 100_000).default(1000),
  BATCHMEM_SEGMENT_MAX_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  BATCHMEM_MAX_MEMORIES: int(1).default(1_000_000),
  BATCHMEM_MAX_JSON_BODY_BYTES: int(1024).default(64 * 1024 * 1024),
  BATCHMEM_MAX_NDJSON_BODY_BYTES: int(1024).default(8 * 1024 ** 3),
  BATCHMEM_MAX_CONTENT_BYTES: int(1).default(256 * 1024),
  BATCHMEM_MAX_METADATA_BYTES: int(2).default(16 * 1024),
  BATCHMEM_MAX_METADATA_DEPTH: int(1, 64).default(8),
  BATCHMEM_ALLOW_PRIVATE_WEBHOOKS: bool.default(false),
  BATCHMEM_SEGMENT_CONCURRENCY: int(1, 256).default(4),
  BATCHMEM_BATCH_CONCURRENCY: int(1, 256).default(4),
  BATCHMEM_TENANT_CONCURRENCY: int(1, 65536).optional(),
  // Embedded orchestrator: process segments on a worker thread, off the thread that serves HTTP (src/app/processing-thread.ts).
  BATCHMEM_PROCESSING_THREAD: bool.default(true),
  // Its CPU priority below the HTTP thread's (a nice increment, as nice(1)): when both want a core, uploads and reads go
  // first. Off by default: a niced thread also yields to every other process on the host (docs/benchmarks.md).
  BATCHMEM_PROCESSING_NICE: int(0, 19).default(0),
  // Read, check and compress submit bodies on a worker thread, so the thread that serves HTTP only moves bytes
  // (src/app/upload-thread.ts). Any orchestrator.
  BATCHMEM_UPLOAD_THREAD: bool.default(true),
  BATCHMEM_SEGMENT_MAX_ATTEMPTS: int(1, 100).default(5),
  BATCHMEM_WEBHOOK_TIMEOUT_MS: int(100).default(10_000),
  BATCHMEM_WEBHOOK_MAX_ATTEMPTS: int(1, 100).default(8),
  BATCHMEM_WEBHOOK_BASE_DELAY_MS: int(1).default(1000),
  BATCHMEM_WEBHOOK_MAX_DELAY_MS: int(1).default(60_000),
  BATCHMEM_WATCH_INTERVAL_MS: int(10).default(250),
  // How long POST /v1/memory (the single add) waits for its memory to be stored before answering 202.
  BATCHMEM_SINGLE_ADD_WAIT_MS: int(0, 60_000).default(10_000),
  BATCHMEM_PAYLOAD_RETENTION: duration.optional(),
  // Upload folders no batch points at (an upload whose process died) are deleted once nothing was written to them
  // for this long. Keep it well above the longest pause between two segments of a live upload (uploadStallMs, 5 min).
  BATCHMEM_ORPHAN_GRACE: duration.default(15 * 60_000),
  // A key-less submit identical to an earlier one of the same tenant within this window answers the earlier batch.
  BATCHMEM_DEDUPE_WINDOW: z.union([z.literal('0').transform(() => 0), duration]).default(10 * 60_000),
  BATCHMEM_WORKER_ID: z.string().optional(),
  // `batchmem worker` serves /metrics on this port (on BATCHMEM_HOST) when set.
  BATCHMEM_WORKER_METRICS_PORT: int(0, 65535).optional(),
  PARSE_SERVER_URL: z.url().optional(),
  PARSE_APP_ID: z.string().optional(),
  PARSE_MASTER_KEY: z.string().optional(),
  PARSE_JAVASCRIPT_KEY: z.string().optional(),
  // Only `batchmem migrate` uses it: Parse's Schema API cannot create the unique indexes the Parse adapters rely on.
  PARSE_DATABASE_URI: z.string().regex(/^postgres(ql)?:\/\//, 'use a postgres:// URL').optional(),
  BATCHMEM_S3_BUCKET: z.string().optional(),
  BATCHMEM_S3_ENDPOINT: z.url().optional(),
  BATCHMEM_S3_REGION: z.string().default('us-east-1'),
  BATCHMEM_S3_FORCE_PATH_STYLE: bool.default(false),
  TEMPORAL_ADDRESS: z.string().default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TASK_QUEUE: z.string().default('batchmem'),
  BATCHMEM_TEMPORAL_SEGMENTS_PER_RUN: int(1).default(500),
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const config = parsed.data;
  const needs = (when: boolean, names: (keyof Config)[], why: string) => {
    const missing = names.filter((name) => when && !config[name]);
    if (missing.length > 0) throw new ConfigError(`invalid configuration: ${why} needs ${missing.join(', ')}`);
  };
  const usesParse = config.BATCHMEM_STORE === 'parse' || config.BATCHMEM_PAYLOADS === 'parse' || config.BATCHMEM_SINK === 'parse';
  needs(usesParse, ['PARSE_SERVER_URL', 'PARSE_APP_ID', 'PARSE_MASTER_KEY'], 'a Parse backend');
  needs(config.BATCHMEM_PAYLOADS === 's3', ['BATCHMEM_S3_BUCKET'], 'BATCHMEM_PAYLOADS=s3');
  needs(config.BATCHMEM_SINK === 'http', ['BATCHMEM_SINK_URL'], 'BATCHMEM_SINK=http');
  needs(config.BATCHMEM_SINK === 'http' && config.BATCHMEM_SINK_FORMAT === 'ndjson', ['BATCHMEM_SINK_SECRET'], 'BATCHMEM_SINK_FORMAT=ndjson');
  if (config.BATCHMEM_SINK_FORMAT === 'papr' && (config.BATCHMEM_SINK_CHUNK ?? 1) > 50) {
    throw new ConfigError('invalid configuration: BATCHMEM_SINK_CHUNK is at most 50 with BATCHMEM_SINK_FORMAT=papr (its batch limit)');
  }
  return config;
}
