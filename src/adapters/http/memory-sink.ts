// MemorySink that forwards every memory to an existing memory service over HTTP (BATCHMEM_SINK=http): Papr's
// add-memory API or a signed NDJSON receiver, at the rate the target can take, each memory once as a logical event.
// Upsert by external id: the ledger's record of what was sent decides the outcome, so an unchanged memory is not sent
// again and an updated one is sent under the id it already has.
import { Agent, request } from 'undici';
import type { MemoryRecord } from '../../domain/memory.ts';
import type { WriteCounts } from '../../domain/progress.ts';
import type { Clock } from '../../ports/clock.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { type Delivery, DeliveryLedger } from './delivery-ledger.ts';
import { DeliveryThread, type StartThread } from './delivery-thread.ts';
import { readAnswer, refusalMessage, WireFormat } from './formats.ts';
import { type HttpSinkObserver, permanent, RequestLoop, type RequestLoopSettings, type Requests, signAttempt } from './request-loop.ts';

export { type HttpSinkObserver, SinkUnavailableError } from './request-loop.ts';

export interface HttpSinkOptions extends RequestLoopSettings {
  /** Memories per request: 1 uses Papr's single add; more uses /v1/memory/batch (Papr, at most 50) or one NDJSON body. */
  chunkSize: number;
  /** Where the delivery ledger lives (SQLite). */
  ledgerPath: string;
  observer?: HttpSinkObserver | undefined;
  /**
   * Where requests are sent from: `thread` (the default) a delivery thread of their own, started with `startThread`
   * (by default as Node.js starts a worker); `inline` the calling thread, which a `clock` needs.
   */
  requests?: 'thread' | 'inline' | undefined;
  startThread?: StartThread | undefined;
  /**
   * Start the delivery thread with the sink, not with its first request: for a thread or process that exists to
   * deliver, so that its first batch does not wait for the thread to load (0.5 to 1 s while an upload holds the cores).
   */
  threadAtOnce?: boolean | undefined;
  /** The time each attempt is signed at (its `webhook-timestamp`), with `requests: 'inline'`; the system clock by default. */
  clock?: Clock | undefined;
}

export class HttpMemorySink implements MemorySink {
  readonly #options: HttpSinkOptions;
  readonly #ledger: DeliveryLedger;
  readonly #wire: WireFormat;
  readonly #requests: Requests;
  /** For readiness checks only: requests go through `#requests`. */
  readonly #probe: Agent;
  readonly #chunkSize: number;
  /** Set when the target answers /v1/memory/batch with 404, 405 or 501: Papr chunks then go one memory at a time. */
  #batchUnsupported = false;

  constructor(options: HttpSinkOptions) {
    this.#options = options;
    this.#ledger = new DeliveryLedger(options.ledgerPath);
    this.#wire = new WireFormat({ format: options.format, apiKey: options.apiKey, secret: options.secret });
    const { url, format, apiKey, secret, concurrency, ratePerSecond, timeoutMs, maxRetryAfterMs, outageToleranceMs, breaker, retry } = options;
    const settings: RequestLoopSettings = { url, format, apiKey, secret, concurrency, ratePerSecond, timeoutMs, maxRetryAfterMs, outageToleranceMs, breaker, retry };
    if (options.clock !== undefined && options.requests !== 'inline') throw new Error('a clock needs requests: inline');
    if (options.requests === 'inline') {
      this.#requests = new RequestLoop(settings, options.observer, options.clock);
    } else {
      const thread = new DeliveryThread(settings, options.observer, options.startThread);
      if (options.threadAtOnce) thread.start();
      this.#requests = thread;
    }
    this.#probe = new Agent({ connections: 1, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs });
    // A chunk larger than the rate could never get its tokens.
    const maxChunk = options.format === 'papr' ? 50 : 10_000;
    this.#chunkSize = Math.max(1, Math.min(options.chunkSize, maxChunk, options.ratePerSecond || Infinity));
  }

  /**
   * Sends the segment's memories not yet delivered, in chunks cut the same way on every call (so a chunk, and its
   * Idempotency-Key, are the same on every retry), and records what the target accepted, in one transaction per
   * segment (after a crash the segment's chunks go again under the same keys). A refused memory is an outcome; a
   * target unreachable for longer than the outage tolerance is a thrown SinkUnavailableError.
   */
  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    if (records.length === 0) return [];
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
    // Each chunk is handed to the requests (the delivery thread) as soon as it is built; they send it when a
    // concurrency slot frees. A thrown SinkUnavailableError leaves the claims standing: the retried item finds them
    // as its own.
    const deliveries: Promise<void>[] = [];
    for (const chunk of chunks) {
      const delivery = this.#deliver(chunk, accepted).then((refusals) => {
        for (const [memoryId, error] of refusals) refused.set(memoryId, error);
      });
      // Awaited below with the others; a failure while later chunks are still being built must not go unhandled.
      delivery.catch(() => undefined);
      deliveries.push(delivery);
    }
    await Promise.all(deliveries);
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
    const answer = await this.#requests.send(chunk.length, wire, signAttempt(this.#wire, wire, this.#options.clock));
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
    await this.checkFlowing();
    let status: number;
    try {
      const response = await request(this.#options.url, {
        method: 'GET',
        headers: this.#options.apiKey ? { 'x-api-key': this.#options.apiKey } : {},
        dispatcher: this.#probe,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      await response.body.dump();
      status = response.statusCode;
    } catch (error) {
      throw new Error(`target unreachable: ${(error as Error).message}`);
    }
    if (status >= 500) throw new Error(`target answered ${status}`);
  }

  /**
   * Fails while the target's Retry-After or the open breaker holds requests back. Only the sink whose thread sends
   * knows: the API's /readyz asks the processing thread's through its own check.
   */
  async checkFlowing(): Promise<void> {
    const pausedMs = await this.#requests.pausedForMs();
    if (pausedMs > 0) throw new Error(`target is failing or throttling; requests paused for ${Math.ceil(pausedMs / 1000)} s`);
  }

  /**
   * Ends the delivery thread: the requests it held (waiting out a down target, say) fail with SinkUnavailableError,
   * and so do later ones. Their chunks are sent again, under the same Idempotency-Keys, when their segments run again.
   */
  async interrupt(): Promise<void> {
    await this.#requests.close();
  }

  async close(): Promise<void> {
    await this.#requests.close();
    await this.#probe.close();
    this.#ledger.close();
  }
}
