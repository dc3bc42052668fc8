// Prometheus metrics (prom-client). Labels carry statuses and outcomes only: never tenants, keys or secrets.
// Names follow Prometheus conventions: base units in the name (seconds, bytes), `_total` on counters.
// Every labelled counter starts at zero for each label value, so a rate or an alert never meets a missing series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { awaitsStart, batchStatuses, initialStatus, type BatchStatus } from '../domain/lifecycle.ts';
import { itemOutcome, itemOutcomes } from '../domain/progress.ts';
import type { Backlog } from '../ports/batch-repository.ts';
import type { HttpSinkObserver } from '../adapters/http/memory-sink.ts';
import { type Observer, webhookResults } from './observer.ts';

export interface Metrics extends Observer {
  registry: Registry;
  httpRequest(method: string, route: string, status: number, durationMs: number): void;
  /**
   * Reports the backlog gauges from `read` (called at most every `minIntervalMs`, on scrape). Only one process
   * per deployment needs this (the API): the figures are the store's, whoever reads them.
   */
  trackBacklog(read: () => Promise<Backlog>, options?: { minIntervalMs?: number; now?: () => number }): void;
}

const byteBuckets = [1024, 16 * 1024, 256 * 1024, 1024 ** 2, 16 * 1024 ** 2, 256 * 1024 ** 2, 1024 ** 3, 4 * 1024 ** 3];

function countWhere(backlog: Backlog, include: (status: BatchStatus) => boolean): number {
  return Object.entries(backlog.byStatus).reduce((sum, [status, count]) => (include(status as BatchStatus) ? sum + (count ?? 0) : sum), 0);
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  // Node's process and runtime figures as batchmem_process_* and batchmem_nodejs_*.
  collectDefaultMetrics({ register: registry, prefix: 'batchmem_' });
  const batches = new Counter({
    name: 'batchmem_batches_total',
    help: 'Batches that reached a status: pending on submit, processing when started, cancelling, then their final status',
    labelNames: ['status'],
    registers: [registry],
  });
  const submittedMemories = new Counter({
    name: 'batchmem_memories_submitted_total',
    help: 'Memories in the batches accepted at submit',
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
  const segmentFailures = new Counter({
    name: 'batchmem_segment_failures_total',
    help: 'Segment attempts that ended without an outcome: error (retried) or corrupt (fails the batch)',
    labelNames: ['kind'],
    registers: [registry],
  });
  const sinkSeconds = new Histogram({
    name: 'batchmem_sink_write_duration_seconds',
    help: 'Time of one write of a segment\'s memories to the memory sink, by result',
    labelNames: ['result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const compression = new Histogram({
    name: 'batchmem_compression_ratio',
    help: 'Raw NDJSON bytes divided by stored bytes, per submitted batch',
    buckets: [1, 1.5, 2, 3, 4, 6, 8, 12, 16],
    registers: [registry],
  });
  const payloadBytes = new Histogram({
    name: 'batchmem_batch_payload_bytes',
    help: 'Size of a submitted batch\'s payload: raw NDJSON or stored (compressed segments)',
    labelNames: ['form'],
    buckets: byteBuckets,
    registers: [registry],
  });
  const webhooks = new Counter({
    name: 'batchmem_webhook_attempts_total',
    help: 'Webhook delivery attempts by result: delivered, failed (will be retried) or rejected (not retried)',
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
  const orphanedUploads = new Counter({
    name: 'batchmem_orphaned_uploads_deleted_total',
    help: 'Upload folders no batch pointed at (their upload died before it was recorded), deleted by the orphan sweep',
    registers: [registry],
  });
  for (const status of batchStatuses) batches.inc({ status }, 0);
  for (const outcome of itemOutcomes) items.inc({ outcome }, 0);
  for (const kind of ['error', 'corrupt']) segmentFailures.inc({ kind }, 0);
  for (const result of webhookResults) webhooks.inc({ result }, 0);

  let sink: HttpSinkObserver | undefined;
  return {
    registry,
    httpSink: () => (sink ??= httpSinkMetrics(registry)),
    batchSubmitted({ rawBytes, storedBytes, memories }) {
      batches.inc({ status: initialStatus });
      submittedMemories.inc(memories);
      if (storedBytes > 0) compression.observe(rawBytes / storedBytes);
      payloadBytes.observe({ form: 'raw' }, rawBytes);
      payloadBytes.observe({ form: 'stored' }, storedBytes);
    },
    batchStarted(status) {
      batches.inc({ status });
    },
    segmentProcessed(durationMs, succeeded, failed, applied) {
      segmentSeconds.observe(durationMs / 1000);
      if (!applied) return;
      items.inc({ outcome: itemOutcome.succeeded }, succeeded);
      items.inc({ outcome: itemOutcome.failed }, failed);
    },
    segmentFailed(kind) {
      segmentFailures.inc({ kind });
    },
    sinkWritten(durationMs, _items, succeeded) {
      sinkSeconds.observe({ result: succeeded ? 'ok' : 'error' }, durationMs / 1000);
    },
    batchFinished(status, expiredItems) {
      batches.inc({ status });
      if (expiredItems > 0) items.inc({ outcome: itemOutcome.expired }, expiredItems);
    },
    webhookAttempted(result) {
      webhooks.inc({ result });
    },
    orphanedUploadDeleted() {
      orphanedUploads.inc();
    },
    httpRequest(method, route, status, durationMs) {
      http.observe({ method, route, status: String(status) }, durationMs / 1000);
    },
    trackBacklog(read, options = {}) {
      const minIntervalMs = options.minIntervalMs ?? 5000;
      const now = options.now ?? Date.now;
      let last: { at: number; value: Promise<Backlog | undefined> } | undefined;
      // One store query serves the three gauges of a scrape, and scrapes closer than minIntervalMs share it.
      const current = () => {
        if (!last || now() - last.at >= minIntervalMs) {
          // A store that cannot answer makes the gauges NaN (unknown) rather than failing the whole scrape.
          last = { at: now(), value: read().catch(() => undefined) };
        }
        return last.value;
      };
      new Gauge({
        name: 'batchmem_batches_waiting',
        help: 'Batches accepted and not started yet (status pending), all tenants',
        registers: [registry],
        async collect() {
          const backlog = await current();
          this.set(backlog ? countWhere(backlog, awaitsStart) : Number.NaN);
        },
      });
      new Gauge({
        name: 'batchmem_batches_running',
        help: 'Batches being processed or cancelled (status processing or cancelling), all tenants',
        registers: [registry],
        async collect() {
          const backlog = await current();
          this.set(backlog ? countWhere(backlog, (status) => !awaitsStart(status)) : Number.NaN);
        },
      });
      new Gauge({
        name: 'batchmem_oldest_unfinished_batch_age_seconds',
        help: 'Age of the oldest batch that is pending, processing or cancelling; 0 when there is none',
        registers: [registry],
        async collect() {
          const backlog = await current();
          if (!backlog) return this.set(Number.NaN);
          this.set(backlog.oldestCreatedAt ? Math.max(0, (now() - Date.parse(backlog.oldestCreatedAt)) / 1000) : 0);
        },
      });
    },
  };
}

/** The sink's Prometheus metrics; labels are HTTP statuses and reasons only. */
function httpSinkMetrics(registry: Registry): HttpSinkObserver {
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
