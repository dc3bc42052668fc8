// Builds the HTTP pipeline sink (BATCHMEM_SINK=http) from configuration, reporting to the process's metrics.
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { HttpMemorySink } from '../adapters/http/memory-sink.ts';
import type { Config } from './config.ts';
import type { Observer } from './observer.ts';

export function httpSink(config: Config, observer?: Observer): HttpMemorySink {
  const format = config.BATCHMEM_SINK_FORMAT;
  return new HttpMemorySink({
    url: config.BATCHMEM_SINK_URL!.replace(/\/+$/, ''),
    format,
    apiKey: config.BATCHMEM_SINK_API_KEY,
    secret: config.BATCHMEM_SINK_SECRET,
    // Papr's single add answers with the target's id for each memory; NDJSON is made for chunks.
    chunkSize: config.BATCHMEM_SINK_CHUNK ?? (format === 'papr' ? 1 : 50),
    concurrency: config.BATCHMEM_SINK_CONCURRENCY,
    ratePerSecond: config.BATCHMEM_SINK_RATE,
    timeoutMs: config.BATCHMEM_SINK_TIMEOUT_MS,
    maxRetryAfterMs: config.BATCHMEM_SINK_MAX_RETRY_AFTER,
    outageToleranceMs: config.BATCHMEM_SINK_OUTAGE_TOLERANCE,
    breaker: {
      failureThreshold: config.BATCHMEM_SINK_BREAKER_FAILURES,
      openMs: config.BATCHMEM_SINK_BREAKER_PAUSE,
      maxOpenMs: Math.max(config.BATCHMEM_SINK_BREAKER_PAUSE, 30_000),
    },
    // The product's one retry policy (exponential backoff, equal jitter): 200 ms doubling to 10 s; the outage
    // tolerance, not an attempt count, decides when a request stops.
    retry: { maxAttempts: Infinity, initialDelayMs: 200, maxDelayMs: 10_000 },
    ledgerPath: join(config.BATCHMEM_DATA_DIR, 'deliveries.db'),
    observer: observer?.httpSink?.(),
    // The processing thread exists to deliver: its delivery thread starts with it. Elsewhere (the HTTP thread, which
    // only reads the ledger unless BATCHMEM_PROCESSING_THREAD=false; a Temporal worker) with the first request.
    threadAtOnce: !isMainThread,
  });
}
