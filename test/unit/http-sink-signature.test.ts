// The HTTP sink's Standard Webhooks signature across a retry: every attempt is signed at the time it leaves, so a
// retry after a pause longer than a receiver's timestamp tolerance (5 minutes in `standardwebhooks`' verify) is not
// refused as stale, while the body, `webhook-id` and `Idempotency-Key` stay those of the one logical event.
// The pause is simulated: the sink's clock is moved on while the receiver holds the first attempt. The batch-completion
// webhook is held to the same rule (each of its attempts is a new `send`, signed then).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WireFormat } from '../../src/adapters/http/formats.ts';
import type { HttpMemorySink, HttpSinkObserver } from '../../src/adapters/http/memory-sink.ts';
import { HttpWebhookNotifier } from '../../src/adapters/webhook/notifier.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { tenantA, uniqueId } from '../support/batches.ts';
import { testHttpSink } from '../support/http-sink.ts';

const secret = 'whsec_' + Buffer.from('an HTTP sink test key, 32 bytes!').toString('base64');
const firstAttemptAt = Date.parse('2026-01-01T00:00:00Z');
/** Longer than the 5-minute tolerance of a Standard Webhooks receiver. */
const pauseMs = 10 * 60_000;

interface Arrival {
  headers: IncomingHttpHeaders;
  body: string;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** A loopback receiver answering each request with `answer(call)`, after `onArrival`; it records headers and raw body. */
async function receiver(
  answer: (call: number) => number,
  onArrival: (call: number) => void,
  retryAfter?: string,
): Promise<{ url: string; arrivals: Arrival[] }> {
  const arrivals: Arrival[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      arrivals.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      onArrival(arrivals.length);
      const status = answer(arrivals.length);
      const headers = { 'content-type': 'application/json', ...(status !== 200 && retryAfter ? { 'retry-after': retryAfter } : {}) };
      response.writeHead(status, headers).end(status === 200 ? '{"results":[]}' : '{"detail":"down for maintenance"}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`, arrivals };
}

function sinkWithClock(url: string, nowMs: () => number, observer?: HttpSinkObserver): HttpMemorySink {
  const rig = testHttpSink({
    url,
    format: 'ndjson',
    secret,
    concurrency: 2,
    timeoutMs: 5000,
    retry: { maxAttempts: Infinity, initialDelayMs: 10, maxDelayMs: 50 },
    // A clock is the calling thread's: the sink's requests go from this thread.
    requests: 'inline',
    clock: { now: () => new Date(nowMs()) },
    observer,
  });
  cleanup.push(() => rig.close());
  return rig.sink;
}

/** What `standardwebhooks`' own verify says of `arrival` when the receiver's clock reads `atMs`: null when it verifies. */
function verifiedAt(arrival: Arrival, atMs: number): string | null {
  vi.useFakeTimers({ toFake: ['Date'], now: atMs });
  try {
    new Webhook(secret).verify(arrival.body, arrival.headers as Record<string, string>, { jsonParse: false });
    return null;
  } catch (error) {
    return (error as Error).message;
  } finally {
    vi.useRealTimers();
  }
}

describe('HTTP sink signature on retries', () => {
  it('signs a retry after a long pause with the time it is sent, over the same body, id and key', async () => {
    let nowMs = firstAttemptAt;
    // The first attempt meets a target that is down; by the retry the sink's clock has moved on past the tolerance.
    const target = await receiver((call) => (call === 1 ? 503 : 200), (call) => {
      if (call === 1) nowMs = firstAttemptAt + pauseMs;
    });
    const sink = sinkWithClock(target.url, () => nowMs);
    const key = uniqueId('k');
    const records = Array.from({ length: 3 }, (_, i) => toMemoryRecord(key, tenantA, i, { content: `memory ${i}` }));

    const outcomes = await sink.writeSegment(records);

    expect(outcomes.map((o) => o.ok)).toEqual([true, true, true]);
    expect(target.arrivals).toHaveLength(2);
    const [first, retry] = target.arrivals as [Arrival, Arrival];
    expect(first.headers['webhook-timestamp']).toBe(String(firstAttemptAt / 1000));
    expect(retry.headers['webhook-timestamp']).toBe(String((firstAttemptAt + pauseMs) / 1000));
    // One logical event: the same bytes under the same id and key.
    expect(retry.body).toBe(first.body);
    expect(retry.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(retry.headers['idempotency-key']).toBe(first.headers['idempotency-key']);
    expect(retry.headers['webhook-id']).toBe(retry.headers['idempotency-key']);
    expect(retry.headers['webhook-signature']).not.toBe(first.headers['webhook-signature']);
    // Each attempt verifies at the time it was sent; the first attempt's headers would be refused at the retry's time,
    // which is what a retry carrying them would have met.
    expect(verifiedAt(first, firstAttemptAt)).toBeNull();
    expect(verifiedAt(retry, firstAttemptAt + pauseMs)).toBeNull();
    expect(verifiedAt(first, firstAttemptAt + pauseMs)).toMatch(/too old/);
  });

  it('signs an attempt again when it waited long for the Retry-After gate after being signed', async () => {
    let nowMs = firstAttemptAt;
    const target = await receiver((call) => (call === 1 ? 503 : 200), () => undefined, '1');
    // The clock jumps once the retry is signed and waits for the gate the 503's Retry-After closed: the sink reports
    // the pause before it signs the retry (in the same run of promise callbacks), and a timer fires only after them.
    const sink = sinkWithClock(target.url, () => nowMs, {
      requestFinished: () => undefined,
      retried: () => undefined,
      paused: () => setTimeout(() => (nowMs = firstAttemptAt + pauseMs), 0),
    });
    const key = uniqueId('k');

    const outcomes = await sink.writeSegment([toMemoryRecord(key, tenantA, 0, { content: 'held back' })]);

    expect(outcomes.map((o) => o.ok)).toEqual([true]);
    expect(target.arrivals).toHaveLength(2);
    const [first, retry] = target.arrivals as [Arrival, Arrival];
    expect(retry.headers['webhook-timestamp']).toBe(String((firstAttemptAt + pauseMs) / 1000));
    expect(retry.body).toBe(first.body);
    expect(retry.headers['idempotency-key']).toBe(first.headers['idempotency-key']);
    expect(verifiedAt(retry, firstAttemptAt + pauseMs)).toBeNull();
  });

  it('builds the body once: a request signed at two times differs only in timestamp and signature', () => {
    const wire = new WireFormat({ format: 'ndjson', secret });
    const request = wire.build([toMemoryRecord(uniqueId('k'), tenantA, 0, { content: 'one' })], false);
    const early = wire.headersAt(request, new Date(firstAttemptAt));
    const late = wire.headersAt(request, new Date(firstAttemptAt + pauseMs));
    const { 'webhook-timestamp': _earlyTime, 'webhook-signature': earlySignature, ...earlyRest } = early;
    const { 'webhook-timestamp': _lateTime, 'webhook-signature': lateSignature, ...lateRest } = late;
    expect(lateRest).toEqual(earlyRest);
    expect(earlySignature).not.toBe(lateSignature);
    expect(verifiedAt({ headers: late, body: request.body }, firstAttemptAt + pauseMs)).toBeNull();
  });

  it('leaves a Papr request, which carries no signature, as built', () => {
    const wire = new WireFormat({ format: 'papr', apiKey: 'a-key', secret });
    const request = wire.build([toMemoryRecord(uniqueId('k'), tenantA, 0, { content: 'one' })], false);
    expect(wire.headersAt(request, new Date(firstAttemptAt))).toEqual(request.headers);
    expect(request.headers['webhook-signature']).toBeUndefined();
  });
});

describe('batch webhook signature on retries', () => {
  it('signs each attempt of one event with the time it is sent, over the same body and id', async () => {
    const target = await receiver((call) => (call === 1 ? 503 : 200), () => undefined);
    const notifier = new HttpWebhookNotifier({ timeoutMs: 5000, allowPrivate: true });
    cleanup.push(() => notifier.close());
    const message = {
      url: target.url,
      secret,
      messageId: 'msg_batch_completed',
      payload: { type: 'batch.completed', timestamp: new Date(firstAttemptAt).toISOString(), data: { ok: true } },
    };
    // The notifier reads the system clock; only Date is faked, so sockets and timeouts run on real time.
    vi.useFakeTimers({ toFake: ['Date'], now: firstAttemptAt });
    const failed = await notifier.send(message);
    vi.setSystemTime(firstAttemptAt + pauseMs);
    const delivered = await notifier.send(message);
    vi.useRealTimers();

    expect([failed.delivered, delivered.delivered]).toEqual([false, true]);
    const [first, retry] = target.arrivals as [Arrival, Arrival];
    expect(first.headers['webhook-timestamp']).toBe(String(firstAttemptAt / 1000));
    expect(retry.headers['webhook-timestamp']).toBe(String((firstAttemptAt + pauseMs) / 1000));
    expect(retry.body).toBe(first.body);
    expect(retry.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(verifiedAt(retry, firstAttemptAt + pauseMs)).toBeNull();
    expect(verifiedAt(first, firstAttemptAt + pauseMs)).toMatch(/too old/);
  });
});
