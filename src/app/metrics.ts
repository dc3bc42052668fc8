// Prometheus metrics (prom-client). Labels carry statuses and outcomes only: never tenants, keys or secrets.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { initialStatus } from '../domain/lifecycle.ts';
import { itemOutcome } from '../domain/progress.ts';
import type { Observer } from './observer.ts';

export interface Metrics extends Observer {
  registry: Registry;
  httpRequest(method: string, route: string, status: number, durationMs: number): void;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'batchmem_process_' });
  const batches = new Counter({
    name: 'batchmem_batches_total',
    help: 'Batches that reached a status (pending on submit, then their final status)',
    labelNames: ['status'],
    registers: [registry],
  });
  const items = new Counter({
    name: 'batchmem_items_total',
    help: 'Memories that reached an outcome (counted once per segment, retries excluded)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const segmentSeconds = new Histogram({
    name: 'batchmem_segment_duration_seconds',
    help: 'Time to process one segment: read, verify, decode, write to the sink, record',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const compression = new Histogram({
    name: 'batchmem_compression_ratio',
    help: 'Raw NDJSON bytes divided by stored bytes, per submitted batch',
    buckets: [1, 1.5, 2, 3, 4, 6, 8, 12, 16],
    registers: [registry],
  });
  const webhooks = new Counter({
    name: 'batchmem_webhook_deliveries_total',
    help: 'Webhook delivery attempts by result',
    labelNames: ['result'],
    registers: [registry],
  });
  const http = new Histogram({
    name: 'batchmem_http_request_duration_seconds',
    help: 'HTTP requests by method, route pattern and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  return {
    registry,
    batchSubmitted(ratio) {
      batches.inc({ status: initialStatus });
      compression.observe(ratio);
    },
    segmentProcessed(durationMs, succeeded, failed, applied) {
      segmentSeconds.observe(durationMs / 1000);
      if (!applied) return;
      items.inc({ outcome: itemOutcome.succeeded }, succeeded);
      items.inc({ outcome: itemOutcome.failed }, failed);
    },
    batchFinished(status) {
      batches.inc({ status });
    },
    webhookAttempted(delivered) {
      webhooks.inc({ result: delivered ? 'delivered' : 'failed' }); // literal: a delivery result, not a batch status
    },
    httpRequest(method, route, status, durationMs) {
      http.observe({ method, route, status: String(status) }, durationMs / 1000);
    },
  };
}
