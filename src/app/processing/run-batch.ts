// Runs a whole batch in this process: the embedded orchestrator's loop. Temporal's workflow follows the same steps
// (begin, segments in parallel, finalize; then the webhook, delivered apart so a slow receiver holds no batch slot)
// with activities that call the same use cases, and the same retry loops from domain/retry-policy.ts.
import pLimit from 'p-limit';
import { failureLimitExceeded } from '../../domain/failure-limits.ts';
import { expiryGraceMs, schedulesSegments } from '../../domain/lifecycle.ts';
import {
  attemptWithRetries,
  retryDelivery,
  type RetryHooks,
  segmentFailureMessage,
  segmentRetryPolicy,
  webhookRetryPolicy,
} from '../../domain/retry-policy.ts';
import type { Services } from '../services.ts';
import type { Lane } from '../fair-share.ts';
import { beginBatch, type BatchPlan } from './begin-batch.ts';
import { deliverWebhook } from './deliver-webhook.ts';
import { expireBatch, msUntilExpiry } from './expire-batch.ts';
import { finalizeBatch } from './finalize-batch.ts';
import { awaitSegments } from './await-segments.ts';
import { processSegment } from './process-segment.ts';

export interface RunOptions {
  workerId: string;
  /** Aborted on cancel or shutdown: no new segment starts; running ones finish. */
  signal: AbortSignal;
  /** Called after each failed attempt of a segment (for logs and metrics). */
  onSegmentError?: (segment: number, attempt: number, error: unknown) => void;
  onSegmentDone?: (segment: number, durationMs: number) => void;
  /** Called when a segment gets its slot, before its first attempt. */
  onSegmentStart?: (segment: number) => void;
  /**
   * Where the batch's segments wait for a slot (the embedded runner's fair-share scheduler, src/app/fair-share.ts);
   * `halt` aborts when no further segment should start. Absent: `segmentConcurrency` slots of the batch's own.
   */
  lane?: (plan: BatchPlan, halt: AbortSignal) => Lane;
}

export type RunEnd = 'finished' | 'interrupted';

/** A timer that an abort cuts short. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export async function runBatch(services: Services, key: string, options: RunOptions): Promise<RunEnd> {
  const plan = await beginBatch(services, key);
  if (!plan) return 'finished';
  // A resumed run whose batch was past its tolerated failures already starts nothing new.
  let failure: string | undefined = failureLimitExceeded(plan.counts, plan.failureLimits);
  // The completion window races the processing: when it passes first the batch expires at once, without waiting for
  // segments still running (a sink that stopped answering would hold them forever); their late outcomes are refused.
  let expired = false;
  const deadline = deadlineTimer(msUntilExpiry(plan, services.clock.now().getTime()), options.signal);
  if (schedulesSegments(plan.status)) {
    const done = new Set(plan.doneSegments);
    // Aborted on cancel, shutdown, a failed segment or the deadline: the segments still waiting for a slot are dropped.
    const halted = new AbortController();
    const halt = AbortSignal.any([options.signal, halted.signal]);
    const limit = options.lane?.(plan, halt) ?? ownLane(services.settings.segmentConcurrency);
    const policy = segmentRetryPolicy(services.settings);
    const stop = () => options.signal.aborted || failure !== undefined || expired;
    const runOne = async (segment: number) => {
      const startedAt = performance.now();
      options.onSegmentStart?.(segment);
      const run = await attemptWithRetries(policy, () => processSegment(services, { key, segment, workerId: options.workerId }), {
        sleep: (ms) => sleep(ms, options.signal),
        stopped: stop,
        onFailure: (attempt, error) => options.onSegmentError?.(segment, attempt, error),
      });
      if (run.status === 'gave_up') failure = segmentFailureMessage(segment, run.attempts, (run.error as Error).message);
      else if (run.status === 'done' && !run.value.ok) failure = run.value.error.reason;
      else if (run.status === 'done' && run.value.ok) {
        options.onSegmentDone?.(segment, performance.now() - startedAt);
        const step = run.value.value;
        // Past the tolerated failures no new segment starts; those running finish and are counted (domain/failure-limits.ts).
        if (step.status === 'recorded') failure ??= failureLimitExceeded(step.counts, plan.failureLimits);
      }
      if (failure !== undefined) halted.abort();
    };
    const pending: Promise<void | undefined>[] = [];
    const schedule = (from: number, to: number) => {
      for (let segment = from; segment < to; segment += 1) {
        if (!done.has(segment)) {
          pending.push(limit(async () => {
            if (!stop()) await runOne(segment);
          }));
        }
      }
    };
    schedule(0, plan.segments);
    // An upload still streaming adds segments: schedule each as it is stored, until the upload ends.
    const scheduled = (async () => {
      let known = { segments: plan.segments, uploadOpen: plan.uploadOpen, schedules: true };
      while (known.uploadOpen && known.schedules && !stop()) {
        const before = known.segments;
        known = await awaitSegments(services, key, before, { maxWaitMs: 1_000, stopped: stop, sleep: (ms) => sleep(ms, options.signal) });
        schedule(before, known.segments);
      }
    })();
    const processed = scheduled.then(async () => {
      // Segments scheduled later join the list while earlier ones run: wait until none is left.
      for (let settled = 0; settled < pending.length; settled = pending.length) await Promise.all(pending.slice(settled));
      return 'processed' as const;
    });
    const first = await Promise.race([processed, deadline.passed]);
    if (first === 'deadline') {
      expired = true;
      halted.abort();
      // No new segment starts; the ones writing now get a short grace to be counted (domain/lifecycle.ts).
      await Promise.race([processed, sleep(expiryGraceMs, options.signal)]);
      await expireBatch(services, key);
      return 'finished';
    }
    // Shutdown (not cancel) leaves the batch as it is, for the next start to resume.
    const current = await services.batches.get(key);
    if (options.signal.aborted && current && schedulesSegments(current.status)) return 'interrupted';
  }
  deadline.clear();
  await finalizeBatch(services, key, failure);
  return 'finished';
}

/** A batch's own `slots` segments at once (Temporal's worker and direct callers; the embedded runner shares). */
function ownLane(slots: number): Lane {
  const limit = pLimit(slots);
  return (task) => limit(task);
}

/** Resolves 'deadline' after `ms` (never for undefined); cleared on `clear()` or when `signal` aborts. */
function deadlineTimer(ms: number | undefined, signal: AbortSignal): { passed: Promise<'deadline'>; clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const passed = new Promise<'deadline'>((resolve) => {
    if (ms === undefined) return;
    timer = setTimeout(() => resolve('deadline'), ms);
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  });
  return { passed, clear: () => clearTimeout(timer) };
}

/** Retries the final webhook with backoff; a dead receiver only costs attempts, never the batch's status. */
export async function deliverWithRetries(services: Services, key: string, signal: AbortSignal): Promise<void> {
  const hooks: RetryHooks = { sleep: (ms) => sleep(ms, signal), stopped: () => signal.aborted };
  await retryDelivery(webhookRetryPolicy(services.settings), async () => {
    const step = await deliverWebhook(services, key);
    if (step.status === 'nothing_to_send') return step;
    const { attempt, attempts } = step;
    if (attempt.delivered) return { status: 'delivered' };
    return { status: 'undelivered', retryable: attempt.retryable, attempts, error: attempt.error, retryAfterMs: attempt.retryAfterMs };
  }, hooks);
}
