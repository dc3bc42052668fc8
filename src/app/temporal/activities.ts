// The activities of `processBatch`. Each one calls one use case with the worker's context; the processing rules
// live in the use cases, shared with the embedded orchestrator. Inputs and results are a few dozen bytes.
import { ApplicationFailure, Context as ActivityContext } from '@temporalio/activity';
import { fairnessKeyFor } from '../../adapters/temporal/orchestrator.ts';
import type { Services } from '../services.ts';
import { beginBatch } from '../processing/begin-batch.ts';
import { deliverWebhook } from '../processing/deliver-webhook.ts';
import { expireBatch } from '../processing/expire-batch.ts';
import { finalizeBatch } from '../processing/finalize-batch.ts';
import { awaitSegments, type SegmentsKnown } from '../processing/await-segments.ts';
import { processSegment } from '../processing/process-segment.ts';
import type { BatchStatus } from '../../domain/batch.ts';
import type { FailureLimits } from '../../domain/failure-limits.ts';
import type { Counts } from '../../domain/progress.ts';

/**
 * Timing and sizing the workflow applies, chosen by the worker's configuration. They reach the workflow through
 * the `beginBatch` result (recorded in history, so replay sees the same values) instead of through its input,
 * which stays at the batch key whatever the settings.
 */
export interface Tuning {
  /** Segment activities one run keeps in flight. */
  parallelism: number;
  /** Segments one run covers before it continues as new; bounds each run's history. */
  segmentsPerRun: number;
  segmentMaxAttempts: number;
  segmentStartToCloseMs: number;
  segmentHeartbeatTimeoutMs: number;
  segmentRetryInitialMs: number;
  segmentRetryMaxMs: number;
  webhookMaxAttempts: number;
  webhookBaseDelayMs: number;
  webhookMaxDelayMs: number;
  webhookStartToCloseMs: number;
}

export interface RunPlan {
  status: BatchStatus | 'missing';
  segments: number;
  /** More segments may come: the upload is still streaming. Absent in histories recorded before streamed uploads. */
  uploadOpen?: boolean;
  counts: Counts;
  /** Segments of this run's window whose outcome is already recorded. */
  doneSegments: number[];
  tuning: Tuning;
  /** The batch's deadline (ISO 8601), or null; absent in histories recorded before deadlines existed. */
  expiresAt?: string | null;
  /** Tolerated failures; absent in histories recorded before they existed (no limit). */
  failureLimits?: FailureLimits | null;
  /**
   * The task-queue fairness key the segment activities carry: the batch's organization (its SHA-256 when longer than
   * Temporal's 64-byte limit), derived by `fairnessKeyFor` as the workflow start's. Absent in histories recorded
   * before fair share (no key).
   */
  fairnessKey?: string;
}

export type SegmentStep = { status: 'recorded'; counts: Counts } | { status: 'skipped'; reason: string };

export interface FinalState {
  status: BatchStatus | 'missing';
  counts: Counts;
}

export type WebhookOutcome = 'delivered' | 'nothing_to_send';

/** Failure types the workflow recognises; a failed activity is never retried by Temporal, the workflow decides. */
export const failureTypes = {
  segmentCorrupt: 'SegmentCorrupt',
  webhookRejected: 'WebhookRejected',
  webhookNotDelivered: 'WebhookNotDelivered',
} as const;

/** One `awaitSegments` activity waits at most this long; well inside its start-to-close timeout. */
const awaitSegmentsMaxMs = 5_000;

const noCounts: Counts = { total: 0, processed: 0, succeeded: 0, failed: 0 };

export interface ActivityOptions {
  /** Recorded with each segment's outcome: the Temporal worker identity. */
  workerId: string;
  tuning: Tuning;
}

export function createActivities(services: Services, options: ActivityOptions) {
  const { tuning, workerId } = options;
  return {
    async beginBatch(input: { batchKey: string; fromSegment: number }): Promise<RunPlan> {
      const plan = await beginBatch(services, input.batchKey);
      if (!plan) return { status: 'missing', segments: 0, counts: noCounts, doneSegments: [], tuning };
      const end = input.fromSegment + tuning.segmentsPerRun;
      const doneSegments = plan.doneSegments.filter((segment) => segment >= input.fromSegment && segment < end);
      return {
        status: plan.status,
        segments: plan.segments,
        uploadOpen: plan.uploadOpen,
        counts: plan.counts,
        doneSegments,
        tuning,
        expiresAt: plan.expiresAt,
        failureLimits: plan.failureLimits,
        fairnessKey: fairnessKeyFor(plan.tenant.organization),
      };
    },

    /**
     * Waits (a few seconds at most, so the workflow stays responsive to cancel) for an open upload to store more than
     * `known` segments or to end; the workflow calls it again while the upload stays open.
     */
    async awaitSegments(input: { batchKey: string; known: number }): Promise<SegmentsKnown> {
      return awaitSegments(services, input.batchKey, input.known, { maxWaitMs: awaitSegmentsMaxMs });
    },

    async processSegment(input: { batchKey: string; segment: number }): Promise<SegmentStep> {
      const activity = ActivityContext.current();
      // A worker that dies stops heartbeating, and Temporal retries the segment elsewhere after the heartbeat
      // timeout instead of waiting out the whole start-to-close timeout.
      const heartbeat = setInterval(() => activity.heartbeat(), Math.max(250, tuning.segmentHeartbeatTimeoutMs / 4));
      try {
        activity.heartbeat();
        const result = await processSegment(services, { key: input.batchKey, segment: input.segment, workerId });
        if (!result.ok) throw ApplicationFailure.nonRetryable(result.error.reason, failureTypes.segmentCorrupt);
        const step = result.value;
        return step.status === 'recorded' ? { status: 'recorded', counts: step.counts } : step;
      } finally {
        clearInterval(heartbeat);
      }
    },

    async finalizeBatch(input: { batchKey: string; failure?: string | undefined }): Promise<FinalState> {
      const batch = await finalizeBatch(services, input.batchKey, input.failure);
      return batch ? { status: batch.status, counts: batch.counts } : { status: 'missing', counts: noCounts };
    },

    /** The completion window passed: the batch ends expired (or stays as it is when it is final or cancelling). */
    async expireBatch(input: { batchKey: string }): Promise<FinalState> {
      const batch = await expireBatch(services, input.batchKey);
      return batch ? { status: batch.status, counts: batch.counts } : { status: 'missing', counts: noCounts };
    },

    /**
     * One delivery attempt. The workflow's retry loop (domain/retry-policy.ts, shared with the local runner) decides
     * whether and when to try again, from the attempts recorded on the batch, carried in the failure's details.
     */
    async deliverWebhook(input: { batchKey: string }): Promise<WebhookOutcome> {
      const step = await deliverWebhook(services, input.batchKey);
      if (step.status === 'nothing_to_send') return 'nothing_to_send';
      const { attempt, attempts } = step;
      if (attempt.delivered) return 'delivered';
      throw ApplicationFailure.create({
        message: attempt.error,
        type: attempt.retryable ? failureTypes.webhookNotDelivered : failureTypes.webhookRejected,
        nonRetryable: !attempt.retryable,
        // The attempts recorded on the batch, and the receiver's Retry-After (ms, or null), for the workflow's loop.
        details: [attempts, attempt.retryAfterMs ?? null],
      });
    },
  };
}

export type BatchActivities = ReturnType<typeof createActivities>;
