// The batch workflow. Deterministic code only: it holds the batch key and a few counters, never memories, and
// every read or write of storage happens in an activity (activities.ts) that calls a use case.
//
// Timeouts and retries, chosen deliberately (values from the worker's configuration, see `Tuning` and
// docs/operations.md):
// - beginBatch / finalizeBatch: start-to-close 1 minute, retried without an attempt limit (1 s doubling to 1 min).
//   They only touch the batch record; if storage is down the batch waits for it instead of being abandoned
//   half-done. A stuck call shows in the Temporal UI as a pending activity with its last failure.
// - processSegment: start-to-close 5 minutes (a segment is at most 1,000 items / 1 MiB), heartbeat timeout
//   20 s so a segment on a dead worker is retried elsewhere within seconds; retried up to
//   BATCHMEM_SEGMENT_MAX_ATTEMPTS times with backoff 1 s doubling to 30 s. Safe to repeat: memory ids derive from
//   batch and index and the ledger keeps the first outcome. A corrupt segment is non-retryable and fails the batch.
// - deliverWebhook: one attempt per activity attempt; Temporal spaces the retries (BATCHMEM_WEBHOOK_BASE_DELAY_MS
//   doubling to BATCHMEM_WEBHOOK_MAX_DELAY_MS, at most BATCHMEM_WEBHOOK_MAX_ATTEMPTS). A receiver that stays
//   down costs attempts only: the batch's status is final before the first attempt.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  rootCause,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { type BatchStatus, schedulesSegments } from '../../domain/lifecycle.ts';
import type { Counts } from '../../domain/progress.ts';
import { type BatchProgress, cancelSignal, type ProcessBatchInput, progressQuery } from '../../adapters/temporal/process-batch.ts';
import type { BatchActivities, failureTypes, Tuning, WebhookOutcome } from './activities.ts';

export interface ProcessBatchResult {
  status: BatchStatus | 'missing';
  counts: Counts;
  webhook: WebhookOutcome | 'not_delivered';
}

const segmentCorrupt: (typeof failureTypes)['segmentCorrupt'] = 'SegmentCorrupt';

const storage = proxyActivities<BatchActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export async function processBatch(input: ProcessBatchInput): Promise<ProcessBatchResult> {
  const { batchKey } = input;
  const firstSegment = input.nextSegment ?? 0;
  const progress: BatchProgress = {
    phase: 'planning',
    counts: null,
    segments: 0,
    nextSegment: firstSegment,
    runningSegments: 0,
    cancelRequested: false,
    failure: null,
  };
  /** Set when a segment activity finds the batch no longer processing (cancelled elsewhere, or gone). */
  let halted = false;
  setHandler(cancelSignal, () => {
    progress.cancelRequested = true;
  });
  setHandler(progressQuery, () => ({ ...progress, counts: progress.counts && { ...progress.counts } }));
  const observe = (counts: Counts) => {
    // Results arrive in any order; the stored counters only grow, so the largest is the latest.
    if (!progress.counts || counts.processed >= progress.counts.processed) progress.counts = counts;
  };

  const plan = await storage.beginBatch({ batchKey, fromSegment: firstSegment });
  if (plan.status === 'missing') {
    progress.phase = 'done';
    return { status: 'missing', counts: plan.counts, webhook: 'nothing_to_send' };
  }
  const { tuning } = plan;
  progress.segments = plan.segments;
  observe(plan.counts);

  if (schedulesSegments(plan.status)) {
    progress.phase = 'processing'; // literal: a workflow phase, not a batch status
    const { processSegment } = segmentActivities(tuning);
    const stopping = () => progress.cancelRequested || progress.failure !== null || halted;
    const runSegment = async (segment: number) => {
      try {
        const step = await processSegment({ batchKey, segment });
        if (step.status === 'recorded') observe(step.counts);
        else {
          log.info('segment skipped; no new segments will start', { segment, reason: step.reason });
          halted = true;
        }
      } catch (error) {
        progress.failure ??= segmentFailure(segment, error, tuning);
      } finally {
        progress.runningSegments -= 1;
      }
    };

    const done = new Set(plan.doneSegments);
    const windowEnd = Math.min(plan.segments, firstSegment + tuning.segmentsPerRun);
    // The server may suggest continuing as new early (history size); a run always makes some progress first.
    const suggestedToContinue = () => workflowInfo().continueAsNewSuggested && progress.nextSegment > firstSegment;
    while (progress.nextSegment < windowEnd && !stopping() && !suggestedToContinue()) {
      const segment = progress.nextSegment;
      progress.nextSegment += 1;
      if (done.has(segment)) continue;
      progress.runningSegments += 1;
      void runSegment(segment);
      await condition(() => progress.runningSegments < tuning.parallelism || stopping());
    }
    // Running segments finish, also on cancel: their outcomes are recorded and counted.
    progress.phase = 'draining';
    await condition(() => progress.runningSegments === 0);
    if (!stopping() && progress.nextSegment < plan.segments) {
      // Starting afresh keeps every run's history bounded, whatever the batch size.
      await continueAsNew<typeof processBatch>({ batchKey, nextSegment: progress.nextSegment });
    }
  }

  progress.phase = 'finalizing';
  const final = await storage.finalizeBatch({ batchKey, failure: progress.failure ?? undefined });
  observe(final.counts);

  progress.phase = 'notifying';
  let webhook: ProcessBatchResult['webhook'];
  try {
    webhook = await webhookActivities(tuning).deliverWebhook({ batchKey });
  } catch (error) {
    // A dead or refusing receiver never changes the batch: its attempts and last error are on the record.
    log.warn('webhook not delivered', { error: rootCause(error) ?? String(error) });
    webhook = 'not_delivered';
  }
  progress.phase = 'done';
  return { status: final.status, counts: final.counts, webhook };
}

function segmentActivities(tuning: Tuning) {
  return proxyActivities<BatchActivities>({
    startToCloseTimeout: tuning.segmentStartToCloseMs,
    heartbeatTimeout: tuning.segmentHeartbeatTimeoutMs,
    retry: {
      initialInterval: tuning.segmentRetryInitialMs,
      backoffCoefficient: 2,
      maximumInterval: tuning.segmentRetryMaxMs,
      maximumAttempts: tuning.segmentMaxAttempts,
      nonRetryableErrorTypes: [segmentCorrupt],
    },
  });
}

function webhookActivities(tuning: Tuning) {
  return proxyActivities<BatchActivities>({
    startToCloseTimeout: tuning.webhookStartToCloseMs,
    retry: {
      initialInterval: tuning.webhookBaseDelayMs,
      backoffCoefficient: 2,
      maximumInterval: tuning.webhookMaxDelayMs,
      maximumAttempts: tuning.webhookMaxAttempts,
    },
  });
}

function segmentFailure(segment: number, error: unknown, tuning: Tuning): string {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  if (cause instanceof ApplicationFailure && cause.type === segmentCorrupt) return cause.message;
  const reason = rootCause(error) ?? String(error);
  return `segment ${segment + 1} failed ${tuning.segmentMaxAttempts} times: ${reason}`;
}
