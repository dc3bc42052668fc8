// MemorySink that forwards every memory to an existing memory service over HTTP (BATCHMEM_SINK=http): Papr's
// add-memory API or a signed NDJSON receiver, at the rate the target can take, each memory once as a logical event.
// Upsert by external id: the ledger's record of what was sent decides the outcome, so an unchanged memory is not sent
// again and an updated one is sent under the id it already has.
import { setImmediate } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, request } from 'undici';
import type { MemoryRecord } from '../../domain/memory.ts';
import { backoffMs, mayRetry, type RetryPolicy } from '../../domain/retry-policy.ts';
import type { WriteCounts } from '../../domain/progress.ts';
import { type Clock, systemClock } from '../../ports/clock.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { type Delivery, DeliveryLedger } from './delivery-ledger.ts';
import { CircuitBreaker, RetryAfterGate, retryAfterMs, TokenBucket } from './flow-control.ts';
import { readAnswer, refusalMessage, type SinkFormat, WireFormat, type WireRequest } from './formats.ts';

/** What the sink reports as it works, for metrics. Labels are statuses and reasons only, never content or keys. */
export interface HttpSinkObserver {
  /** One request's end: the HTTP status, or `timeout` / `network` when no answer came. */
  requestFinished(status: string, durationMs: number): void;
  /** A request about to be sent again, and why (`429`, `503`, `timeout`, ...). */
  retried(reason: string): void;
  /** New requests held back: `retry_after` (the target asked) or `breaker` (the target keeps failing). */
  paused(reason: 'retry_after' | 'breaker', durationMs: number): void;
}

export interface HttpSinkOptions {
  /** The target: Papr's API base URL (paths /v1/memory and /v1/memory/batch are appended), or the NDJSON endpoint. */
  url: string;
  format: SinkFormat;
  apiKey?: string | undefined;
  secret?: string | undefined;
  /** Memories per request: 1 uses Papr's single add; more uses /v1/memory/batch (Papr, at most 50) or one NDJSON body. */
  chunkSize: number;
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
  /** Where the delivery ledger lives (SQLite). */
  ledgerPath: string;
  observer?: HttpSinkObserver | undefined;
  /** The time each attempt is signed at (its `webhook-timestamp`); the system clock by default. */
  clock?: Clock | undefined;
}

/** A chunk that could not be delivered within the outage tolerance: the segment attempt fails and is retried later. */
export class SinkUnavailableError extends Error {
  override name = 'SinkUnavailableError';
}

type Attempt =
  | { kind: 'answered'; status: number; text: string; gated: boolean }
  | { kind: 'unanswered'; reason: 'timeout' | 'network'; message: string };

/**
 * How old an attempt's signature may be when the attempt leaves; older (it waited that long for the Retry-After gate,
 * the breaker, a concurrency slot or the rate), it is signed again. Far inside a Standard Webhooks receiver's tolerance
 * (5 minutes in `standardwebhooks`' verify), and above the usual wait for a slot, so the signature (a few ms for a
 * chunk, hashed in JavaScript) is made once per attempt in the ordinary case, while the chunk is being built.
 */
const signatureMaxAgeMs = 10_000;

type SignedHeaders = { signedAtMs: number; headers: Record<string, string> };

const permanent = (status: number) => status >= 400 && status < 500 && ![408, 409, 429].includes(status);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class HttpMemorySink implements MemorySink {
  readonly #options: HttpSinkOptions;
  readonly #ledger: DeliveryLedger;
  readonly #agent: Agent;
  readonly #wire: WireFormat;
  readonly #limit: LimitFunction;
  readonly #bucket: TokenBucket | undefined;
  readonly #gate = new RetryAfterGate();
  readonly #breaker: CircuitBreaker;
  readonly #chunkSize: number;
  /** Set when the target answers /v1/memory/batch with 404, 405 or 501: Papr chunks then go one memory at a time. */
  #batchUnsupported = false;

  constructor(options: HttpSinkOptions) {
    this.#options = options;
    this.#ledger = new DeliveryLedger(options.ledgerPath);
    this.#agent = new Agent({
      connections: options.concurrency,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: options.timeoutMs,
    });
    this.#wire = new WireFormat({ format: options.format, apiKey: options.apiKey, secret: options.secret });
    this.#limit = pLimit(options.concurrency);
    this.#bucket = options.ratePerSecond > 0 ? new TokenBucket(options.ratePerSecond) : undefined;
    // A chunk larger than the rate could never get its tokens.
    const maxChunk = options.format === 'papr' ? 50 : 10_000;
    this.#chunkSize = Math.max(1, Math.min(options.chunkSize, maxChunk, options.ratePerSecond || Infinity));
    this.#breaker = new CircuitBreaker({
      ...options.breaker,
      onOpen: (pauseMs) => options.observer?.paused('breaker', pauseMs),
    });
  }

  /**
   * Sends the segment's memories not yet delivered, in chunks cut the same way on every call (so a chunk, and its
   * Idempotency-Key, are the same on every retry), and records what the target accepted, in one transaction per
   * segment (after a crash the segment's chunks go again under the same keys). A refused memory is an outcome; a
   * target unreachable for longer than the outage tolerance is a thrown SinkUnavailableError.
   */
  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    if (records.length === 0) return [];
    // The ledger's work for a segment (its plan now, its settlement at the end) each take a turn of their own, like
    // the builds below: the segment's decoding just before is as long a stretch, and answers wait through both.
    await setImmediate();
    const batchKey = records[0]!.batchKey;
    const indexes = records.map((r) => r.index);
    const [fromIndex, toIndex] = [Math.min(...indexes), Math.max(...indexes)];
    const earlier = this.#ledger.earlierWrites(batchKey, fromIndex, toIndex);
    const plans = await this.#ledger.plan(records.filter((r) => !earlier.has(r.index)));
    // An update goes out under the id the memory already has.
    const outgoing = plans.filter((p) => p.send).map((p) => (p.memoryId === p.record.memoryId ? p.record : { ...p.record, memoryId: p.memoryId }));
    const delivered = this.#ledger.delivered(batchKey, fromIndex, toIndex);
    const refused = new Map<string, string>();
    const accepted: Delivery[] = [];
    const chunks: MemoryRecord[][] = [];
    for (let start = 0; start < outgoing.length; start += this.#chunkSize) {
      const chunk = outgoing.slice(start, start + this.#chunkSize);
      if (chunk.some((r) => !delivered.has(r.memoryId))) chunks.push(chunk);
    }
    // Each chunk is built (serialized, and its first attempt signed: a few milliseconds) in its own turn of the event
    // loop, and queues for a concurrency slot as soon as it is built: answers arriving meanwhile are read between two
    // builds, so a slot they free is taken again at once instead of after the whole segment's builds (measured:
    // docs/benchmarks.md).
    // A thrown SinkUnavailableError leaves the claims standing: the retried item finds them as its own.
    const deliveries: Promise<void>[] = [];
    for (const chunk of chunks) {
      if (deliveries.length > 0) await setImmediate();
      const delivery = this.#deliver(chunk, accepted).then((refusals) => {
        for (const [memoryId, error] of refusals) refused.set(memoryId, error);
      });
      // Awaited below with the others; a failure while later chunks are still being built must not go unhandled.
      delivery.catch(() => undefined);
      deliveries.push(delivery);
    }
    await Promise.all(deliveries);
    await setImmediate();
    const stored = plans.filter((p) => !(p.send && refused.has(p.memoryId)));
    await this.#ledger.settle(
      batchKey,
      accepted,
      plans.filter((p) => p.send && refused.has(p.memoryId)),
      stored.map((p) => ({ index: p.record.index, memoryId: p.memoryId, externalId: p.record.externalId, outcome: p.outcome })),
    );
    const planOf = new Map(plans.map((p) => [p.record.index, p]));
    return records.map((r): ItemOutcome => {
      const first = earlier.get(r.index);
      if (first) return { index: r.index, ok: true, ...first };
      const p = planOf.get(r.index)!;
      const error = p.send ? refused.get(p.memoryId) : undefined;
      return error === undefined ? { index: r.index, ok: true, memoryId: p.memoryId, outcome: p.outcome } : { index: r.index, ok: false, error };
    });
  }

  /** Delivers one chunk, adding what the target accepted to `accepted`; returns the refused memories with the target's status and message. */
  async #deliver(chunk: MemoryRecord[], accepted: Delivery[]): Promise<Map<string, string>> {
    const useBatch = this.#options.format === 'papr' && chunk.length > 1 && !this.#batchUnsupported;
    if (this.#options.format === 'papr' && chunk.length > 1 && !useBatch) return this.#deliverEach(chunk, accepted);
    const wire = this.#wire.build(chunk, useBatch);
    const answer = await this.#send(chunk.length, wire);
    if (answer.status === 404 || answer.status === 405 || answer.status === 501) {
      if (useBatch) {
        this.#batchUnsupported = true;
        return this.#deliverEach(chunk, accepted);
      }
    }
    if (permanent(answer.status)) {
      // A refused chunk says nothing about which memory was refused: each goes alone, under its own key.
      if (chunk.length > 1) return this.#deliverEach(chunk, accepted);
      return new Map([[chunk[0]!.memoryId, `target answered ${answer.status}: ${refusalMessage(answer.text)}`]]);
    }
    const items = readAnswer(this.#options.format, chunk, answer.text, wire.path);
    const refused = new Map<string, string>();
    const again: MemoryRecord[] = [];
    chunk.forEach((record, position) => {
      const item = items[position]!;
      if (item.ok) {
        const { memoryId, batchKey, index, externalId, attributes } = record;
        accepted.push({ memoryId, batchKey, index, externalId, attributes, sinkId: item.sinkId });
      } else if (permanent(item.status)) refused.set(record.memoryId, `target answered ${item.status}: ${item.message}`);
      else again.push(record);
    });
    if (again.length > 0) for (const [id, error] of await this.#deliverEach(again, accepted)) refused.set(id, error);
    return refused;
  }

  async #deliverEach(records: MemoryRecord[], accepted: Delivery[]): Promise<Map<string, string>> {
    const refused = new Map<string, string>();
    await Promise.all(
      records.map(async (record) => {
        for (const [id, error] of await this.#deliver([record], accepted)) refused.set(id, error);
      }),
    );
    return refused;
  }

  /**
   * Sends one request until it gets a final answer (2xx, 409 or a permanent 4xx). Transient failures wait for the
   * target's Retry-After (shared by all requests) or the retry policy's backoff, and count towards the breaker.
   */
  async #send(memories: number, wire: WireRequest): Promise<{ status: number; text: string }> {
    const startedAt = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      // Every attempt is signed anew, with its own timestamp (the body, webhook-id and Idempotency-Key stay the
      // chunk's): a retry after a pause longer than the receiver's tolerance is not refused as stale.
      const signed = this.#sign(wire);
      const result = await this.#limit(() => this.#attempt(memories, wire, signed));
      if (result.kind === 'answered') {
        const status = result.status;
        if ((status >= 200 && status < 300) || status === 409 || permanent(status)) return { status, text: result.text };
        this.#giveUpAfter(startedAt, attempt, `target answered ${status}: ${refusalMessage(result.text)}`);
        this.#options.observer?.retried(String(status));
        // With a Retry-After the shared gate already holds this request back, with every other.
        if (!result.gated) await sleep(backoffMs(this.#options.retry, attempt));
        continue;
      }
      this.#giveUpAfter(startedAt, attempt, `target unreachable (${result.reason}): ${result.message}`);
      this.#options.observer?.retried(result.reason);
      await sleep(backoffMs(this.#options.retry, attempt));
    }
  }

  #giveUpAfter(startedAt: number, failedAttempts: number, lastError: string): void {
    const elapsedMs = Date.now() - startedAt;
    if (elapsedMs >= this.#options.outageToleranceMs || !mayRetry(this.#options.retry, failedAttempts)) {
      throw new SinkUnavailableError(`gave up after ${failedAttempts} attempts in ${Math.round(elapsedMs / 1000)} s; last: ${lastError}`);
    }
  }

  /** The headers of an attempt of `wire` made now, by the sink's clock. */
  #sign(wire: WireRequest): SignedHeaders {
    const now = (this.#options.clock ?? systemClock).now();
    return { signedAtMs: now.getTime(), headers: this.#wire.headersAt(wire, now) };
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
    const waitedMs = (this.#options.clock ?? systemClock).now().getTime() - signed.signedAtMs;
    const { headers } = waitedMs > signatureMaxAgeMs ? this.#sign(wire) : signed;
    this.#breaker.enter();
    const startedAt = performance.now();
    try {
      const response = await request(this.#options.url + wire.path, {
        method: 'POST',
        headers,
        body: wire.body,
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      const text = await response.body.text();
      const status = response.statusCode;
      this.#options.observer?.requestFinished(String(status), performance.now() - startedAt);
      // The breaker and the gate learn of the answer before the concurrency slot is released, so the next
      // request waiting for the slot already sees them.
      if (status >= 500 || status === 408) this.#breaker.failed();
      else this.#breaker.succeeded();
      const header = response.headers['retry-after'];
      const waitMs =
        status === 429 || status === 503
          ? retryAfterMs(Array.isArray(header) ? header[0] : header, Date.now(), this.#options.maxRetryAfterMs)
          : undefined;
      if (waitMs !== undefined) {
        this.#gate.closeUntil(Date.now() + waitMs);
        this.#options.observer?.paused('retry_after', waitMs);
      }
      return { kind: 'answered', status, text, gated: waitMs !== undefined };
    } catch (error) {
      this.#breaker.failed();
      const reason = isTimeout(error) ? 'timeout' : 'network';
      this.#options.observer?.requestFinished(reason, performance.now() - startedAt);
      return { kind: 'unanswered', reason, message: (error as Error).message };
    } finally {
      finished();
    }
  }

  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    return this.#ledger
      .list(batchKey, afterIndex, limit)
      .map((d) => ({ index: d.index, memoryId: d.memoryId, externalId: d.externalId, outcome: d.outcome, version: d.version, attributes: d.attributes, sinkId: d.sinkId }));
  }

  async countOutcomes(batchKey: string): Promise<WriteCounts> {
    return this.#ledger.countOutcomes(batchKey);
  }

  /** The delivery ledger is SQLite and creates its tables when opened; the target is another service's to prepare. */
  async prepare(): Promise<undefined> {
    return undefined;
  }

  /** Ready when the ledger answers, the breaker is not holding requests back, and the target answers below 500. */
  async check(): Promise<void> {
    this.#ledger.check();
    const pausedMs = Math.max(this.#breaker.openForMs, this.#gate.closedForMs);
    if (pausedMs > 0) throw new Error(`target is failing or throttling; requests paused for ${Math.ceil(pausedMs / 1000)} s`);
    let status: number;
    try {
      const response = await request(this.#options.url, {
        method: 'GET',
        headers: this.#options.apiKey ? { 'x-api-key': this.#options.apiKey } : {},
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      await response.body.dump();
      status = response.statusCode;
    } catch (error) {
      throw new Error(`target unreachable: ${(error as Error).message}`);
    }
    if (status >= 500) throw new Error(`target answered ${status}`);
  }

  async close(): Promise<void> {
    await this.#agent.close();
    this.#ledger.close();
  }
}

function isTimeout(error: unknown): boolean {
  const { name, code } = error as { name?: string; code?: string };
  return name === 'TimeoutError' || name === 'AbortError' || (code !== undefined && /TIMEOUT/.test(code));
}
