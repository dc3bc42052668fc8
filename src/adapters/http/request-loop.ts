// The HTTP sink's request loop: sends one built request until the target gives a final answer, under the process's
// flow control (concurrency slots, the rate, the target's Retry-After, the breaker) and the product's retry policy.
// It runs on the delivery thread (delivery-thread.ts) in the product, or on the calling thread.
import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, request } from 'undici';
import { backoffMs, mayRetry, type RetryPolicy } from '../../domain/retry-policy.ts';
import { type Clock, systemClock } from '../../ports/clock.ts';
import { CircuitBreaker, RetryAfterGate, retryAfterMs, TokenBucket } from './flow-control.ts';
import { refusalMessage, type SinkFormat, WireFormat, type WireRequest } from './formats.ts';

/** What the sink reports as it works, for metrics. Labels are statuses and reasons only, never content or keys. */
export interface HttpSinkObserver {
  /** One request's end: the HTTP status, or `timeout` / `network` when no answer came. */
  requestFinished(status: string, durationMs: number): void;
  /** A request about to be sent again, and why (`429`, `503`, `timeout`, ...). */
  retried(reason: string): void;
  /** New requests held back: `retry_after` (the target asked) or `breaker` (the target keeps failing). */
  paused(reason: 'retry_after' | 'breaker', durationMs: number): void;
}

/** The request loop's settings: plain data, so that they can be handed to the delivery thread as they are. */
export interface RequestLoopSettings {
  /** The target: Papr's API base URL (paths /v1/memory and /v1/memory/batch are appended), or the NDJSON endpoint. */
  url: string;
  format: SinkFormat;
  apiKey?: string | undefined;
  secret?: string | undefined;
  /** Requests in flight at once, for the whole process. */
  concurrency: number;
  /** Memories per second for the whole process; 0 means no limit. */
  ratePerSecond: number;
  /** One request's time budget, connect to last byte. */
  timeoutMs: number;
  /** The longest `Retry-After` honoured; a target asking for more is retried after this. */
  maxRetryAfterMs: number;
  /** How long one chunk keeps being retried before the segment attempt fails (and the orchestrator retries it). */
  outageToleranceMs: number;
  breaker: { failureThreshold: number; openMs: number; maxOpenMs: number };
  /**
   * The backoff after a transient failure, through the product's one retry policy. `maxAttempts` bounds the attempts
   * of one request (Infinity: only `outageToleranceMs` bounds them).
   */
  retry: RetryPolicy;
}

/** A request's final answer: a 2xx, a 409, or a permanent refusal (a 4xx other than 408, 409 and 429). */
export interface FinalAnswer {
  status: number;
  text: string;
}

/** Sends built requests until each has its final answer: the request loop itself, or the delivery thread running it. */
export interface Requests {
  /**
   * Sends `wire` (carrying `memories` memories, for the rate) until the target's final answer; the first attempt goes
   * with `signed` unless it has grown stale waiting. Throws SinkUnavailableError when no final answer came within the
   * outage tolerance (or the policy's attempts).
   */
  send(memories: number, wire: WireRequest, signed: SignedHeaders): Promise<FinalAnswer>;
  /** How long new requests are held back (the target's Retry-After, or the open breaker), in ms; 0 when they are not. */
  pausedForMs(): Promise<number>;
  close(): Promise<void>;
}

/** A chunk that could not be delivered within the outage tolerance: the segment attempt fails and is retried later. */
export class SinkUnavailableError extends Error {
  override name = 'SinkUnavailableError';
}

/** Whether a status is a refusal the target will repeat: a 4xx other than 408 (timeout), 409 (have it) and 429 (slow down). */
export const permanent = (status: number) => status >= 400 && status < 500 && ![408, 409, 429].includes(status);

type Attempt =
  | { kind: 'answered'; status: number; text: string; gated: boolean }
  | { kind: 'unanswered'; reason: 'timeout' | 'network'; message: string };

/**
 * How old an attempt's signature may be when the attempt leaves; older (it waited that long for the Retry-After gate,
 * the breaker, a concurrency slot or the rate), it is signed again. Far inside a Standard Webhooks receiver's tolerance
 * (5 minutes in `standardwebhooks`' verify), and above the usual wait for a slot, so the signature (a few ms for a
 * chunk, hashed in JavaScript) is made once per attempt in the ordinary case: the first by the thread that builds the
 * chunk, so that the thread sending it does no hashing while answers wait.
 */
const signatureMaxAgeMs = 10_000;

/** An attempt's headers (`WireFormat.headersAt`), and when they were signed (epoch ms). */
export type SignedHeaders = { signedAtMs: number; headers: Record<string, string> };

/** The headers of an attempt of `wire` made now, by `clock`. */
export function signAttempt(format: WireFormat, wire: WireRequest, clock: Clock = systemClock): SignedHeaders {
  const now = clock.now();
  return { signedAtMs: now.getTime(), headers: format.headersAt(wire, now) };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class RequestLoop implements Requests {
  readonly #settings: RequestLoopSettings;
  readonly #observer: HttpSinkObserver | undefined;
  readonly #clock: Clock;
  readonly #agent: Agent;
  readonly #wire: WireFormat;
  readonly #limit: LimitFunction;
  readonly #bucket: TokenBucket | undefined;
  readonly #gate = new RetryAfterGate();
  readonly #breaker: CircuitBreaker;

  /** `clock` is the time each attempt is signed at (its `webhook-timestamp`); the system clock by default. */
  constructor(settings: RequestLoopSettings, observer?: HttpSinkObserver, clock: Clock = systemClock) {
    this.#settings = settings;
    this.#observer = observer;
    this.#clock = clock;
    this.#agent = new Agent({
      connections: settings.concurrency,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: settings.timeoutMs,
      connectTimeout: settings.timeoutMs,
    });
    this.#wire = new WireFormat({ format: settings.format, apiKey: settings.apiKey, secret: settings.secret });
    this.#limit = pLimit(settings.concurrency);
    this.#bucket = settings.ratePerSecond > 0 ? new TokenBucket(settings.ratePerSecond) : undefined;
    this.#breaker = new CircuitBreaker({ ...settings.breaker, onOpen: (pauseMs) => observer?.paused('breaker', pauseMs) });
  }

  /**
   * Transient failures wait for the target's Retry-After (shared by all requests) or the retry policy's backoff, and
   * count towards the breaker.
   */
  async send(memories: number, wire: WireRequest, firstSigned: SignedHeaders): Promise<FinalAnswer> {
    const startedAt = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      // Every attempt is signed anew, with its own timestamp (the body, webhook-id and Idempotency-Key stay the
      // chunk's): a retry after a pause longer than the receiver's tolerance is not refused as stale.
      const signed = attempt === 1 ? firstSigned : signAttempt(this.#wire, wire, this.#clock);
      const result = await this.#limit(() => this.#attempt(memories, wire, signed));
      if (result.kind === 'answered') {
        const status = result.status;
        if ((status >= 200 && status < 300) || status === 409 || permanent(status)) return { status, text: result.text };
        this.#giveUpAfter(startedAt, attempt, `target answered ${status}: ${refusalMessage(result.text)}`);
        this.#observer?.retried(String(status));
        // With a Retry-After the shared gate already holds this request back, with every other.
        if (!result.gated) await sleep(backoffMs(this.#settings.retry, attempt));
        continue;
      }
      this.#giveUpAfter(startedAt, attempt, `target unreachable (${result.reason}): ${result.message}`);
      this.#observer?.retried(result.reason);
      await sleep(backoffMs(this.#settings.retry, attempt));
    }
  }

  async pausedForMs(): Promise<number> {
    return Math.max(this.#breaker.openForMs, this.#gate.closedForMs);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  #giveUpAfter(startedAt: number, failedAttempts: number, lastError: string): void {
    const elapsedMs = Date.now() - startedAt;
    if (elapsedMs >= this.#settings.outageToleranceMs || !mayRetry(this.#settings.retry, failedAttempts)) {
      throw new SinkUnavailableError(`gave up after ${failedAttempts} attempts in ${Math.round(elapsedMs / 1000)} s; last: ${lastError}`);
    }
  }

  /**
   * One attempt: waits for the breaker, the Retry-After gate and the rate, then sends with nothing awaited between,
   * signed again if the wait outlasted `signatureMaxAgeMs`.
   */
  async #attempt(memories: number, wire: WireRequest, signed: SignedHeaders): Promise<Attempt> {
    let finished: () => void = () => {};
    for (;;) {
      await this.#gate.pass();
      await this.#breaker.ready();
      if (this.#gate.closedForMs > 0 || !this.#breaker.passes()) continue;
      finished = (await this.#bucket?.take(memories)) ?? finished;
      if (this.#gate.closedForMs === 0 && this.#breaker.passes()) break;
      // The gate closed or the breaker opened while waiting for tokens: sending now would break the window.
      finished();
    }
    const waitedMs = this.#clock.now().getTime() - signed.signedAtMs;
    const { headers } = waitedMs > signatureMaxAgeMs ? signAttempt(this.#wire, wire, this.#clock) : signed;
    this.#breaker.enter();
    const startedAt = performance.now();
    try {
      const response = await request(this.#settings.url + wire.path, {
        method: 'POST',
        headers,
        body: wire.body,
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(this.#settings.timeoutMs),
      });
      const text = await response.body.text();
      const status = response.statusCode;
      this.#observer?.requestFinished(String(status), performance.now() - startedAt);
      // The breaker and the gate learn of the answer before the concurrency slot is released, so the next
      // request waiting for the slot already sees them.
      if (status >= 500 || status === 408) this.#breaker.failed();
      else this.#breaker.succeeded();
      const header = response.headers['retry-after'];
      const waitMs =
        status === 429 || status === 503
          ? retryAfterMs(Array.isArray(header) ? header[0] : header, Date.now(), this.#settings.maxRetryAfterMs)
          : undefined;
      if (waitMs !== undefined) {
        this.#gate.closeUntil(Date.now() + waitMs);
        this.#observer?.paused('retry_after', waitMs);
      }
      return { kind: 'answered', status, text, gated: waitMs !== undefined };
    } catch (error) {
      this.#breaker.failed();
      const reason = isTimeout(error) ? 'timeout' : 'network';
      this.#observer?.requestFinished(reason, performance.now() - startedAt);
      return { kind: 'unanswered', reason, message: (error as Error).message };
    } finally {
      finished();
    }
  }
}

function isTimeout(error: unknown): boolean {
  const { name, code } = error as { name?: string; code?: string };
  return name === 'TimeoutError' || name === 'AbortError' || (code !== undefined && /TIMEOUT/.test(code));
}
