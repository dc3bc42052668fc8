// Flow control for the HTTP sink: how fast, how often and when it may talk to the target. One instance of each per
// sink, and one sink per process, so every segment of every batch shares them.
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket holding `ratePerSecond` tokens, one per memory. A request takes a token per memory it carries and
 * hands them back when it has finished (answered or failed); they return to the bucket `windowMs` later. A request
 * reaches the target somewhere between its take and its finish, so two requests that use the same token reach it
 * at least `windowMs` apart, whatever the latency: no one-second window ever carries more memories than the rate.
 * (A bucket refilled by the clock cannot promise that: a full bucket plus a second of refill fit in one window,
 * and a request delayed on its way bunches up with the next.) The cost is a rate of R / (1 + latency in seconds).
 */
export class TokenBucket {
  readonly #capacity: number;
  readonly #windowMs: number;
  #available: number;
  /** Callers waiting for tokens, served first come first served so a large chunk is not starved by small ones. */
  readonly #waiters: { count: number; wake: () => void }[] = [];

  constructor(ratePerSecond: number, windowMs = 1000) {
    this.#capacity = ratePerSecond;
    this.#available = ratePerSecond;
    this.#windowMs = windowMs;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /**
   * Waits until `count` tokens (1 ≤ count ≤ capacity) are free and takes them. Returns the function to call once
   * the request that used them has finished (or was never sent); the tokens come back `windowMs` after that call.
   */
  async take(count: number): Promise<() => void> {
    if (count > this.#capacity) throw new RangeError(`cannot take ${count} tokens from a bucket of ${this.#capacity}`);
    if (this.#waiters.length === 0 && this.#available >= count) {
      this.#available -= count;
    } else {
      await new Promise<void>((wake) => this.#waiters.push({ count, wake }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      setTimeout(() => {
        this.#available += count;
        this.#serve();
      }, this.#windowMs).unref();
    };
  }

  #serve(): void {
    while (this.#waiters.length > 0 && this.#available >= this.#waiters[0]!.count) {
      const waiter = this.#waiters.shift()!;
      this.#available -= waiter.count;
      waiter.wake();
    }
  }
}

/**
 * The time before which no request may go out, set by the target's `Retry-After`. Shared by all requests: a 429 is
 * about the target, not about the one request that drew it.
 */
export class RetryAfterGate {
  #notBefore = 0;

  /** Closes the gate until `untilMs` (epoch ms), unless it is already closed for longer. */
  closeUntil(untilMs: number): void {
    this.#notBefore = Math.max(this.#notBefore, untilMs);
  }

  /** Resolves once the gate is open; a later `closeUntil` while waiting extends the wait. */
  async pass(): Promise<void> {
    for (let waitMs = this.#notBefore - Date.now(); waitMs > 0; waitMs = this.#notBefore - Date.now()) {
      await sleep(waitMs);
    }
  }

  get closedForMs(): number {
    return Math.max(0, this.#notBefore - Date.now());
  }
}

/**
 * Reads a `Retry-After` value (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as milliseconds from `nowMs`,
 * capped at `maxMs`. Undefined when absent or unreadable, so the caller falls back to its backoff.
 */
export function retryAfterMs(header: string | undefined, nowMs: number, maxMs: number): number | undefined {
  if (header === undefined) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Math.min(maxMs, Number(value) * 1000);
  // Every HTTP-date form starts with a day name; without this check Date.parse would read "-5" as a year.
  const date = /^[A-Za-z]{3}/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(date)) return undefined;
  return Math.min(maxMs, Math.max(0, date - nowMs));
}

export interface BreakerOptions {
  /** Consecutive transient failures that open the breaker. */
  failureThreshold: number;
  /** How long the first pause lasts; each pause that ends in another failure doubles it, up to `maxOpenMs`. */
  openMs: number;
  maxOpenMs: number;
  /** Called each time the breaker opens (a pause starts). */
  onOpen?: (pauseMs: number) => void;
}

/**
 * A circuit breaker: after `failureThreshold` transient failures in a row it stops new requests for a while instead
 * of letting every segment burn its attempts, then lets one probe through (half-open). A probe that succeeds closes
 * it; one that fails opens it again for longer. Nothing has to reset it by hand.
 *
 * Use: `await ready()`, then, with no await in between, `passes()` to confirm and `enter()` to send; report the
 * result with `succeeded()` or `failed()`.
 */
export class CircuitBreaker {
  readonly #options: BreakerOptions;
  #consecutiveFailures = 0;
  /** 0 while closed; otherwise when the pause ends (after which the breaker is half-open). */
  #openUntil = 0;
  #pauseMs: number;
  #probe: Promise<void> | undefined;
  #endProbe: (() => void) | undefined;

  constructor(options: BreakerOptions) {
    this.#options = options;
    this.#pauseMs = options.openMs;
  }

  get openForMs(): number {
    return Math.max(0, this.#openUntil - Date.now());
  }

  /** Waits while the breaker is open, or half-open with its probe in flight. */
  async ready(): Promise<void> {
    for (;;) {
      const waitMs = this.#openUntil - Date.now();
      if (waitMs > 0) await sleep(waitMs);
      else if (this.#probe) await this.#probe;
      else return;
    }
  }

  /** Whether a request may go out now. */
  passes(): boolean {
    return Date.now() >= this.#openUntil && this.#probe === undefined;
  }

  /** Marks a request as sent; while half-open that request is the one probe. */
  enter(): void {
    if (this.#openUntil > 0 && this.#probe === undefined) {
      this.#probe = new Promise<void>((resolve) => (this.#endProbe = resolve));
    }
  }

  succeeded(): void {
    this.#consecutiveFailures = 0;
    this.#openUntil = 0;
    this.#pauseMs = this.#options.openMs;
    this.#releaseProbe();
  }

  failed(): void {
    this.#consecutiveFailures += 1;
    const halfOpen = this.#openUntil > 0 && Date.now() >= this.#openUntil;
    if (halfOpen || (this.#openUntil === 0 && this.#consecutiveFailures >= this.#options.failureThreshold)) {
      const pauseMs = this.#pauseMs;
      this.#openUntil = Date.now() + pauseMs;
      this.#pauseMs = Math.min(this.#options.maxOpenMs, pauseMs * 2);
      this.#options.onOpen?.(pauseMs);
    }
    this.#releaseProbe();
  }

  #releaseProbe(): void {
    const end = this.#endProbe;
    this.#probe = undefined;
    this.#endProbe = undefined;
    end?.();
  }
}
