// Builds the HTTP pipeline sink (BATCHMEM_SINK=http) from configuration, with its metrics on the process's registry.
import { join } from 'node:path';
import { Counter, Histogram, type Registry } from 'prom-client';
import { HttpMemorySink, type HttpSinkObserver } from '../adapters/http/memory-sink.ts';
import type { Config } from './config.ts';
import type { Observer } from './observer.ts';

/** The sink's Prometheus metrics; labels are HTTP statuses and reasons only. */
export function httpSinkMetrics(registry: Registry): HttpSinkObserver {
  const requests = new Counter({
    name: 'batchmem_sink_requests_total',
    help: 'Requests to the pipeline sink target, by HTTP status (or timeout / network when no answer came)',
    labelNames: ['status'],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'batchmem_sink_retries_total',
    help: 'Requests to the pipeline sink target sent again, by the reason of the failure before',
    labelNames: ['reason'],
    registers: [registry],
  });
  const pauses = new Counter({
    name: 'batchmem_sink_pauses_total',
    help: 'Times new requests to the target were held back: retry_after (the target asked) or breaker (it kept failing)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'batchmem_sink_request_duration_seconds',
    help: 'Time from sending a request to the pipeline sink target to its full answer',
    labelNames: ['status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  return {
    requestFinished(status, durationMs) {
      requests.inc({ status });
      latency.observe({ status }, durationMs / 1000);
    },
    retried(reason) {
      retries.inc({ reason });
    },
    paused(reason) {
      pauses.inc({ reason });
    },
  };
}

export function httpSink(config: Config, observer?: Observer): HttpMemorySink {
  const registry = observer && 'registry' in observer ? (observer.registry as Registry) : undefined;
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
    observer: registry ? httpSinkMetrics(registry) : undefined,
  });
}
