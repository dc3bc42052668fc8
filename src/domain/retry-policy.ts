// How every retry in batchmem is spaced and when it stops: segments (local runner and Temporal workflow), webhook
// deliveries, the local runner's restart of a failed run, and the S3 client. Pure and import-free, so the Temporal
// workflow uses it too (its Math.random is deterministic under replay, so the jitter is as well).

export interface RetryPolicy {
  /** Attempts in all, the first included; `Infinity` retries until the caller stops. */
  maxAttempts: number;
  /** Backoff ceiling after the first failed attempt; it doubles with each further failure, up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * Milliseconds to wait after `failedAttempts` (1 or more) failed attempts: exponential backoff with equal jitter,
 * i.e. uniformly between half and all of `min(maxDelayMs, initialDelayMs * 2^(failedAttempts - 1))`. At least half
 * the ceiling keeps a recovering backend from being hammered; the random half spreads concurrent retries.
 */
export function backoffMs(policy: Pick<RetryPolicy, 'initialDelayMs' | 'maxDelayMs'>, failedAttempts: number, random = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, failedAttempts - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * The wait after `failedAttempts` failures when the other side said how long to wait (`Retry-After`, in ms): the
 * longer of that and the backoff, never past the policy's cap `maxDelayMs` (a receiver cannot park a delivery for
 * days). Without a hint it is the backoff.
 */
export function delayBeforeRetryMs(
  policy: Pick<RetryPolicy, 'initialDelayMs' | 'maxDelayMs'>,
  failedAttempts: number,
  retryAfterMs: number | undefined,
  random = Math.random,
): number {
  const backoff = backoffMs(policy, failedAttempts, random);
  return retryAfterMs === undefined ? backoff : Math.min(policy.maxDelayMs, Math.max(backoff, retryAfterMs));
}

/** The stop condition: try again only when the failure may pass and attempts are left. */
export function mayRetry(policy: Pick<RetryPolicy, 'maxAttempts'>, failedAttempts: number, retryable = true): boolean {
  return retryable && failedAttempts < policy.maxAttempts;
}

/** Why a batch failed when one of its segments (0-based `segment`) kept failing. */
export function segmentFailureMessage(segment: number, attempts: number, reason: string): string {
  return `segment ${segment + 1} failed ${attempts} times: ${reason}`;
}

/** Why a webhook stopped being retried. */
export function webhookGaveUpMessage(attempts: number, reason: string): string {
  return `gave up after ${attempts} attempts: ${reason}`;
}

/** Segment retries: BATCHMEM_SEGMENT_MAX_ATTEMPTS attempts (5 by default), 1 s doubling to 30 s. */
export function segmentRetryPolicy(settings: { segmentMaxAttempts: number; segmentRetryInitialMs: number; segmentRetryMaxMs: number }): RetryPolicy {
  return { maxAttempts: settings.segmentMaxAttempts, initialDelayMs: settings.segmentRetryInitialMs, maxDelayMs: settings.segmentRetryMaxMs };
}

/** A local run that threw (a backend down for a while) is started again until it gets through: 250 ms doubling to 30 s. */
export const runRestartPolicy: RetryPolicy = { maxAttempts: Infinity, initialDelayMs: 250, maxDelayMs: 30_000 };

/** What a runner supplies to a retry loop: how to wait (a timer, or a workflow timer) and when to give up early. */
export interface RetryHooks {
  /** Waits `ms`; may resolve early when the run is stopped. */
  sleep(ms: number): Promise<void>;
  /** True once the run is stopping (cancel, shutdown, another segment failed): no further attempt starts. */
  stopped(): boolean;
  random?: () => number;
}

export type Attempted<T> =
  | { status: 'done'; value: T; attempts: number }
  | { status: 'gave_up'; error: unknown; attempts: number; retryable: boolean }
  | { status: 'stopped'; attempts: number };

/**
 * The retry loop of a step that throws when it fails (a segment): attempts it until it succeeds, fails in a way that
 * `retryable` says will not pass, runs out of attempts, or the run stops; waits `backoffMs` between attempts.
 * `onFailure` sees each failed attempt (for logs and metrics).
 */
export async function attemptWithRetries<T>(
  policy: RetryPolicy,
  step: (attempt: number) => Promise<T>,
  hooks: RetryHooks & { retryable?: (error: unknown) => boolean; onFailure?: (attempt: number, error: unknown) => void },
): Promise<Attempted<T>> {
  for (let attempt = 1; ; attempt += 1) {
    if (hooks.stopped()) return { status: 'stopped', attempts: attempt - 1 };
    try {
      return { status: 'done', value: await step(attempt), attempts: attempt };
    } catch (error) {
      hooks.onFailure?.(attempt, error);
      const retryable = hooks.retryable?.(error) ?? true;
      if (!mayRetry(policy, attempt, retryable)) return { status: 'gave_up', error, attempts: attempt, retryable };
      await hooks.sleep(backoffMs(policy, attempt, hooks.random));
    }
  }
}

/** One webhook delivery attempt as a runner reports it; `attempts` counts every attempt recorded on the batch. */
export type DeliveryStep =
  | { status: 'nothing_to_send' }
  | { status: 'delivered' }
  | { status: 'undelivered'; retryable: boolean; attempts: number; error: string; retryAfterMs?: number | undefined };

export type DeliveryEnd = 'delivered' | 'nothing_to_send' | 'not_delivered';

/**
 * The webhook retry loop, for both runners. The stop condition counts the attempts recorded on the batch, so a run
 * resumed after a restart goes on where the last one stopped instead of starting the count again. A receiver's
 * `Retry-After` lengthens the wait up to the policy's cap (`delayBeforeRetryMs`).
 */
export async function retryDelivery(policy: RetryPolicy, attempt: () => Promise<DeliveryStep>, hooks: RetryHooks): Promise<DeliveryEnd> {
  while (!hooks.stopped()) {
    const step = await attempt();
    if (step.status !== 'undelivered') return step.status;
    if (!mayRetry(policy, step.attempts, step.retryable)) return 'not_delivered';
    await hooks.sleep(delayBeforeRetryMs(policy, step.attempts, step.retryAfterMs, hooks.random));
  }
  return 'not_delivered';
}

/** Webhook retries: BATCHMEM_WEBHOOK_MAX_ATTEMPTS, BATCHMEM_WEBHOOK_BASE_DELAY_MS doubling to _MAX_DELAY_MS. */
export function webhookRetryPolicy(settings: { webhookMaxAttempts: number; webhookBaseDelayMs: number; webhookMaxDelayMs: number }): RetryPolicy {
  return { maxAttempts: settings.webhookMaxAttempts, initialDelayMs: settings.webhookBaseDelayMs, maxDelayMs: settings.webhookMaxDelayMs };
}
