// What the use cases report as they work, for metrics. Optional: a context without an observer reports nothing.
import type { HttpSinkObserver } from '../adapters/http/memory-sink.ts';

/** The result of one webhook delivery attempt: delivered, failed (retried) or rejected (not retried). */
export const webhookResults = ['delivered', 'failed', 'rejected'] as const; // literal: delivery results, not batch statuses
export type WebhookResult = (typeof webhookResults)[number];
export interface Observer {
  /** A new batch was recorded: its payload's raw NDJSON and stored (compressed) sizes, in bytes. */
  batchSubmitted(payload: { rawBytes: number; storedBytes: number; memories: number }): void;
  /** A batch began: the status it moved to from pending. */
  batchStarted(status: string): void;
  segmentProcessed(durationMs: number, succeeded: number, failed: number, applied: boolean): void;
  /** A segment attempt ended without an outcome: `error` (a backend failed; retried) or `corrupt` (not retried). */
  segmentFailed(kind: 'error' | 'corrupt'): void;
  /** One `MemorySink.writeSegment` call, whether it returned or threw. */
  sinkWritten(durationMs: number, items: number, succeeded: boolean): void;
  /** A batch reached a final status; an expired one also reports the items it never processed (`expiredItems`). */
  batchFinished(status: string, expiredItems: number): void;
  /** One webhook delivery attempt: delivered, failed (retryable) or rejected (not retried). */
  webhookAttempted(result: WebhookResult): void;
  /** The orphan sweep deleted one upload folder no batch pointed at (processing/sweep-orphaned-uploads.ts). */
  orphanedUploadDeleted?(): void;
  /** The HTTP pipeline sink's own metrics (BATCHMEM_SINK=http): made on the first call, the same object after. */
  httpSink?(): HttpSinkObserver;
}
