// How the S3 client retries: long enough to ride out a store that is restarting, never forever.
//
// The SDK's own strategies ('standard' and 'adaptive') share one retry budget per client: 500 tokens, 14 spent
// per retry in this SDK version. With a few dozen segment reads in flight, a store that is down for a few seconds
// drains it in two rounds, after which every request fails at once ("No retry token available"). That guards AWS
// against retry storms but turns a brief outage of a self-hosted store into failed batches (measured against
// versitygw stopped for 5 s: with retryMode 'standard' or 'adaptive' and maxAttempts 10, all of 48 concurrent
// GetObjects failed within 120 ms; with this strategy all 48 succeeded once the store was back). This strategy instead
// gives each request its own time budget: transient and throttling errors are retried with capped, jittered
// exponential backoff until `outageToleranceMs` has passed since the first attempt.
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { backoffMs } from '../../domain/retry-policy.ts';

// The SDK's RetryStrategyV2 interface, taken from the client's own config type (its package is not a direct dependency).
type RetryStrategyV2 = Extract<NonNullable<S3ClientConfig['retryStrategy']>, { acquireInitialRetryToken: unknown }>;
type RetryToken = Awaited<ReturnType<RetryStrategyV2['acquireInitialRetryToken']>>;
type RetryErrorInfo = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1];

export interface OutageRetryOptions {
  /** How long one request keeps retrying, from its first attempt. */
  outageToleranceMs: number;
  /** First backoff; each retry doubles it up to `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

class Token implements RetryToken {
  readonly startedAt: number;
  readonly #count: number;
  readonly #delayMs: number;

  constructor(startedAt: number, count: number, delayMs: number) {
    this.startedAt = startedAt;
    this.#count = count;
    this.#delayMs = delayMs;
  }

  getRetryCount(): number {
    return this.#count;
  }

  getRetryDelay(): number {
    return this.#delayMs;
  }
}

export class OutageRetryStrategy implements RetryStrategyV2 {
  readonly mode = 'batchmem-outage';
  readonly #toleranceMs: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;

  constructor(options: OutageRetryOptions) {
    this.#toleranceMs = options.outageToleranceMs;
    this.#baseDelayMs = options.baseDelayMs ?? 100;
    this.#maxDelayMs = options.maxDelayMs ?? 2_000;
  }

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return new Token(Date.now(), 0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, errorInfo: RetryErrorInfo): Promise<RetryToken> {
    const token = previous as Token;
    // Client errors (4xx: not found, precondition failed, bad digest) and plain server errors are answers, not outages.
    if (errorInfo.errorType !== 'TRANSIENT' && errorInfo.errorType !== 'THROTTLING') throw errorInfo.error;
    const count = token.getRetryCount() + 1;
    // The product's one backoff: base·2^count capped, with equal jitter (at least half), so concurrent requests
    // spread out without hammering a recovering store.
    let delayMs = backoffMs({ initialDelayMs: this.#baseDelayMs, maxDelayMs: this.#maxDelayMs }, count + 1);
    if (errorInfo.retryAfterHint instanceof Date) delayMs = Math.max(delayMs, errorInfo.retryAfterHint.getTime() - Date.now());
    if (Date.now() + delayMs - token.startedAt > this.#toleranceMs) throw errorInfo.error;
    return new Token(token.startedAt, count, delayMs);
  }

  recordSuccess(): void {}
}
