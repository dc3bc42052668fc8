// What the use cases report as they work, for metrics. Optional: a context without an observer reports nothing.
export interface Observer {
  batchSubmitted(compressionRatio: number, memories: number): void;
  segmentProcessed(durationMs: number, succeeded: number, failed: number, applied: boolean): void;
  batchFinished(status: string): void;
  webhookAttempted(delivered: boolean): void;
}
