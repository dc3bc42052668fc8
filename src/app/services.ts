// What every use case receives: the ports, and the settings that shape behaviour. (Named `Services` so that it
// does not collide with Hono's or Temporal's `Context`.)
import type { Codec } from '../domain/codec.ts';
import type { MemoryLimits } from '../domain/memory.ts';
import type { BatchRepository } from '../ports/batch-repository.ts';
import type { Clock } from '../ports/clock.ts';
import type { MemorySink } from '../ports/memory-sink.ts';
import type { Orchestrator } from '../ports/orchestrator.ts';
import type { PayloadStore } from '../ports/payload-store.ts';
import type { WebhookNotifier } from '../ports/webhook-notifier.ts';
import type { Observer } from './observer.ts';
import type { LeftoverPayloads } from './processing/payload-leftovers.ts';

export interface Ports {
  batches: BatchRepository;
  payloads: PayloadStore;
  sink: MemorySink;
  webhooks: WebhookNotifier;
  clock: Clock;
}

export interface Settings {
  codec: Codec;
  codecLevel: number;
  segmentMaxItems: number;
  segmentMaxRawBytes: number;
  maxMemoriesPerBatch: number;
  memoryLimits: MemoryLimits;
  allowPrivateWebhooks: boolean;
  /** Segments processed at once for one batch. */
  segmentConcurrency: number;
  segmentMaxAttempts: number;
  /** Segment backoff (domain/retry-policy.ts): the first ceiling, doubling up to the second. */
  segmentRetryInitialMs: number;
  segmentRetryMaxMs: number;
  webhookMaxAttempts: number;
  webhookBaseDelayMs: number;
  webhookMaxDelayMs: number;
  /** How often a progress watcher looks for changes. */
  watchIntervalMs: number;
  /** A key-less submit identical to one from the same tenant this recently answers the first batch; 0: off. */
  dedupeWindowMs: number;
}

export interface Services extends Ports {
  settings: Settings;
  observer?: Observer | undefined;
  /** Where uploads that could not be deleted at once wait for a later sweep; without it they are only dropped. */
  leftovers?: LeftoverPayloads | undefined;
}

/** Use cases that start or stop work also need the orchestrator. */
export interface OrchestratedServices extends Services {
  orchestrator: Orchestrator;
}

export const defaultSettings: Settings = {
  codec: 'zstd',
  codecLevel: 3,
  segmentMaxItems: 1000,
  segmentMaxRawBytes: 1024 * 1024,
  maxMemoriesPerBatch: 1_000_000,
  memoryLimits: { maxContentBytes: 256 * 1024, maxMetadataBytes: 16 * 1024, maxMetadataDepth: 8 },
  allowPrivateWebhooks: false,
  segmentConcurrency: 4,
  segmentMaxAttempts: 5,
  segmentRetryInitialMs: 1_000,
  segmentRetryMaxMs: 30_000,
  webhookMaxAttempts: 8,
  webhookBaseDelayMs: 1000,
  webhookMaxDelayMs: 60_000,
  dedupeWindowMs: 10 * 60_000,
  watchIntervalMs: 250,
};
