// The batch workflow. Deterministic code only: it holds the batch key and a few counters, never memories, and
// every read or write of storage happens in an activity (activities.ts) that calls a use case.
//
// Timeouts and retries, chosen deliberately (values from the worker's configuration, see `Tuning` and
// docs/operations.md):
// - beginBatch / finalizeBatch: start-to-close 1 minute, retried without an attempt limit (1 s doubling to 1 min).
//   They only touch the batch record; if storage is down the batch waits for it instead of being abandoned
//   half-done. A stuck call shows in the Temporal UI as a pending activity with its last failure.
// - processSegment: start-to-close 5 minutes (a segment is at most 1,000 items / 1 MiB), heartbeat timeout
//   20 s so a segment on a dead worker is retried elsewhere within seconds. Each activity runs once; the workflow
//   retries it with the segment policy of domain/retry-policy.ts (BATCHMEM_SEGMENT_MAX_ATTEMPTS attempts, 1 s
//   doubling to 30 s, jittered), the same loop the local runner uses. Safe to repeat: memory ids derive from batch
//   and index and the ledger keeps the first outcome. A corrupt segment is not retried and fails the batch.
// - deliverWebhook: one attempt per activity; the workflow's webhook loop (domain/retry-policy.ts, shared with the
//   local runner) spaces the retries (BATCHMEM_WEBHOOK_BASE_DELAY_MS doubling to BATCHMEM_WEBHOOK_MAX_DELAY_MS, at
//   most BATCHMEM_WEBHOOK_MAX_ATTEMPTS recorded attempts). A receiver that stays down costs attempts only: the
//   batch's status is final before the first attempt.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  rootCause,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { failureLimitExceeded } from '../../domain/failure-limits.ts';
import { type BatchStatus, expiryGraceMs, schedulesSegments } from '../../domain/lifecycle.ts';
import {
  attemptWithRetries,
  type DeliveryEnd,
  type DeliveryStep,
  retryDelivery,
  segmentFailureMessage,
  segmentRetryPolicy,
  webhookRetryPolicy,
} from '../../domain/retry-policy.ts';
import type { Counts } from '../../domain/progress.ts';
import { type BatchProgress, cancelSignal, type ProcessBatchInput, progressQuery } from '../../ports/batch-workflow.ts';
import type { BatchActivities, failureTypes, Tuning } from './activities.ts';

export interface ProcessBatchResult {
  status: BatchStatus | 'missing';
  counts: Counts;
  webhook: DeliveryEnd;
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
  // A run (after continue-as-new or a restart) whose batch is past its tolerated failures starts nothing new.
  progress.failure = failureLimitExceeded(plan.counts, plan.failureLimits) ?? null;

  // The completion window is a timer racing the processing (not a workflow timeout, which would lose the run and
  // its progress): when it fires first, no new segment starts, running ones are not waited for, and the batch expires.
  // Each run after continue-as-new sets it again from the stored deadline. Histories without one set no timer.
  let expired = false;
  if (plan.expiresAt && schedulesSegments(plan.status)) {
    void sleep(Math.max(1, Date.parse(plan.expiresAt) - Date.now())).then(() => {
      expired = true;
    });
  }

  if (schedulesSegments(plan.status)) {
    progress.phase = 'processing'; // literal: a workflow phase, not a batch status
    const { processSegment } = segmentActivities(tuning, plan.fairnessKey);
    const stopping = () => progress.cancelRequested || progress.failure !== null || halted || expired;
    const policy = segmentRetryPolicy(tuning);
    const runSegment = async (segment: number) => {
      try {
        const run = await attemptWithRetries(policy, () => processSegment({ batchKey, segment }), {
          // Cut short by cancel or another segment's failure, like the local runner's timer.
          sleep: (ms) => condition(stopping, ms).then(() => undefined),
          stopped: stopping,
          retryable: (error) => !isCorrupt(error),
        });
        if (run.status === 'gave_up') {
          progress.failure ??= run.retryable
            ? segmentFailureMessage(segment, run.attempts, rootCause(run.error) ?? String(run.error))
            : failureMessage(run.error);
        } else if (run.status === 'done') {
          const step = run.value;
          if (step.status === 'recorded') {
            observe(step.counts);
            // Past the tolerated failures no new segment starts; running ones finish (domain/failure-limits.ts).
            progress.failure ??= failureLimitExceeded(step.counts, plan.failureLimits) ?? null;
          } else {
            log.info('segment skipped; no new segments will start', { segment, reason: step.reason });
            halted = true;
          }
        }
      } finally {
        progress.runningSegments -= 1;
      }
    };

    const done = new Set(plan.doneSegments);
    const runEnd = firstSegment + tuning.segmentsPerRun;
    // An upload still streaming (invalid_items: record) adds segments while the run goes: the record's count is read
    // again (an activity) whenever the run has scheduled every segment stored so far.
    let uploadOpen = plan.uploadOpen === true;
    // The server may suggest continuing as new early (history size); a run always makes some progress first.
    const suggestedToContinue = () => workflowInfo().continueAsNewSuggested && progress.nextSegment > firstSegment;
    for (;;) {
      while (progress.nextSegment < Math.min(progress.segments, runEnd) && !stopping() && !suggestedToContinue()) {
        const segment = progress.nextSegment;
        progress.nextSegment += 1;
        if (done.has(segment)) continue;
        progress.runningSegments += 1;
        void runSegment(segment);
        await condition(() => progress.runningSegments < tuning.parallelism || stopping());
      }
      if (!uploadOpen || stopping() || suggestedToContinue() || progress.nextSegment >= runEnd) break;
      const known = await storage.awaitSegments({ batchKey, known: progress.segments });
      progress.segments = Math.max(progress.segments, known.segments);
      uploadOpen = known.uploadOpen;
      if (!known.schedules) halted = true;
    }
    // Running segments finish, also on cancel: their outcomes are recorded and counted.
    progress.phase = 'draining';
    await condition(() => progress.runningSegments === 0 || expired);
    // Past the deadline, segments writing now get a short grace to be counted (domain/lifecycle.ts).
    if (expired && progress.runningSegments > 0) await condition(() => progress.runningSegments === 0, expiryGraceMs);
    if (!stopping() && (progress.nextSegment < progress.segments || uploadOpen)) {
      // Starting afresh keeps every run's history bounded, whatever the batch size.
      await continueAsNew<typeof processBatch>({ batchKey, nextSegment: progress.nextSegment });
    }
  }

  progress.phase = 'finalizing';
  const final = expired
    ? await storage.expireBatch({ batchKey })
    : await storage.finalizeBatch({ batchKey, failure: progress.failure ?? undefined });
  observe(final.counts);

  progress.phase = 'notifying';
  const webhook = await notify(batchKey, tuning);
  progress.phase = 'done';
  return { status: final.status, counts: final.counts, webhook };
}

/** The webhook retry loop (domain/retry-policy.ts, shared with the local runner), one activity per attempt. */
async function notify(batchKey: string, tuning: Tuning): Promise<DeliveryEnd> {
  const { deliverWebhook } = webhookActivities(tuning);
  let tries = 0;
  return retryDelivery(webhookRetryPolicy(tuning), async (): Promise<DeliveryStep> => {
    tries += 1;
    try {
      return { status: await deliverWebhook({ batchKey }) };
    } catch (error) {
      // A dead or refusing receiver never changes the batch: its attempts and last error are on the record.
      log.warn('webhook not delivered', { error: rootCause(error) ?? String(error) });
      const cause = error instanceof ActivityFailure ? error.cause : error;
      const recorded = cause instanceof ApplicationFailure ? Number(cause.details?.[0]) : NaN;
      const retryAfterMs = cause instanceof ApplicationFailure ? cause.details?.[1] : undefined;
      return {
        status: 'undelivered',
        retryable: !(cause instanceof ApplicationFailure && cause.nonRetryable),
        // An attempt that timed out may not be on the record: count it here.
        attempts: Number.isFinite(recorded) ? Math.max(recorded, tries) : tries,
        error: failureMessage(error),
        retryAfterMs: typeof retryAfterMs === 'number' ? retryAfterMs : undefined,
      };
    }
  }, { sleep, stopped: () => false });
}

/**
 * Sends a final batch's webhook again (POST /v1/batch/{id}/webhook/redeliver reset its delivery state first): the
 * same loop, the same event and `webhook-id`. The plan of beginBatch (a no-op on a final batch) brings the tuning.
 */
export async function redeliverWebhook(input: ProcessBatchInput): Promise<DeliveryEnd> {
  const plan = await storage.beginBatch({ batchKey: input.batchKey, fromSegment: 0 });
  if (plan.status === 'missing') return 'nothing_to_send';
  return notify(input.batchKey, plan.tuning);
}

// Segment and webhook activities run once per call: the retry loops of domain/retry-policy.ts, the same the local
// runner uses, space and stop the attempts (workflow timers; jitter from the workflow's deterministic Math.random).
const once = { maximumAttempts: 1 };

/**
 * With a fairness key (the organization), a server with task-queue fairness enabled dispatches the segments of
 * different organizations in turn instead of first come, first served (docs/operations.md, fair share).
 */
function segmentActivities(tuning: Tuning, fairnessKey: string | undefined) {
  return proxyActivities<BatchActivities>({
    startToCloseTimeout: tuning.segmentStartToCloseMs,
    heartbeatTimeout: tuning.segmentHeartbeatTimeoutMs,
    retry: once,
    ...(fairnessKey ? { priority: { fairnessKey } } : {}),
  });
}

function webhookActivities(tuning: Tuning) {
  return proxyActivities<BatchActivities>({ startToCloseTimeout: tuning.webhookStartToCloseMs, retry: once });
}

function isCorrupt(error: unknown): boolean {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof ApplicationFailure && cause.type === segmentCorrupt;
}

/** The activity's own message (a corrupt segment's reason, a receiver's answer), not the wrapper's. */
function failureMessage(error: unknown): string {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof ApplicationFailure ? cause.message : (rootCause(error) ?? String(error));
}
