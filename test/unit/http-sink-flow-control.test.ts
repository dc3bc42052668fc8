// The HTTP sink's flow control on its own: Retry-After parsing, the token bucket's one-second guarantee, the breaker.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker, retryAfterMs, TokenBucket } from '../../src/adapters/http/flow-control.ts';
import { idempotencyKey, readAnswer } from '../../src/adapters/http/formats.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { tenantA } from '../support/batches.ts';

describe('Retry-After', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delay-seconds', () => expect(retryAfterMs('3', now, 60_000)).toBe(3000));
  it('reads an HTTP date relative to now', () => expect(retryAfterMs('Thu, 01 Jan 2026 00:00:05 GMT', now, 60_000)).toBe(5000));
  it('reads a date in the past as no wait', () => expect(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now, 60_000)).toBe(0));
  it('caps what the target asks for', () => expect(retryAfterMs('3600', now, 60_000)).toBe(60_000));
  it('ignores an absent or unreadable value', () => {
    expect(retryAfterMs(undefined, now, 60_000)).toBeUndefined();
    expect(retryAfterMs('soon', now, 60_000)).toBeUndefined();
    expect(retryAfterMs('-5', now, 60_000)).toBeUndefined();
  });
});

describe('token bucket', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('never lets more than the rate through in any one-second window, whatever each request takes', async () => {
    const bucket = new TokenBucket(100, 1000);
    const taken: number[] = [];
    const takers = Array.from({ length: 60 }, async (_, i) => {
      const finished = await bucket.take(10);
      taken.push(Date.now());
      await new Promise((resolve) => setTimeout(resolve, (i * 37) % 300)); // the request's latency
      finished();
    });
    await vi.advanceTimersByTimeAsync(10_000);
    await Promise.all(takers);
    expect(taken.length).toBe(60);
    for (const start of taken) expect(taken.filter((t) => t >= start && t < start + 1000).length * 10).toBeLessThanOrEqual(100);
  });

  it('returns tokens only a window after the request finished', async () => {
    const bucket = new TokenBucket(10, 1000);
    const finished = await bucket.take(10);
    let next = false;
    const waiting = bucket.take(5).then(() => (next = true));
    await vi.advanceTimersByTimeAsync(1500);
    expect(next).toBe(false);
    finished();
    await vi.advanceTimersByTimeAsync(999);
    expect(next).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await waiting;
    expect(next).toBe(true);
  });

  it('serves waiters in order, so a large request is not starved by small ones', async () => {
    const bucket = new TokenBucket(10, 1000);
    const order: string[] = [];
    (await bucket.take(9))();
    const large = bucket.take(10).then((finished) => { order.push('large'); finished(); });
    const small = bucket.take(1).then((finished) => { order.push('small'); finished(); });
    await vi.advanceTimersByTimeAsync(3000);
    await Promise.all([large, small]);
    expect(order).toEqual(['large', 'small']);
  });

  it('refuses a request larger than the bucket', async () => {
    await expect(new TokenBucket(5).take(6)).rejects.toThrow(RangeError);
  });
});

describe('circuit breaker', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('opens after consecutive failures, lets one probe through, and closes when it succeeds', async () => {
    const pauses: number[] = [];
    const breaker = new CircuitBreaker({ failureThreshold: 3, openMs: 1000, maxOpenMs: 8000, onOpen: (ms) => pauses.push(ms) });
    breaker.failed();
    breaker.failed();
    expect(breaker.passes()).toBe(true);
    breaker.failed();
    expect(breaker.passes()).toBe(false);
    expect(pauses).toEqual([1000]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(breaker.passes()).toBe(true);
    breaker.enter(); // the probe
    expect(breaker.passes()).toBe(false);
    breaker.failed(); // the probe failed: a longer pause
    expect(pauses).toEqual([1000, 2000]);
    await vi.advanceTimersByTimeAsync(2000);
    breaker.enter();
    breaker.succeeded();
    expect(breaker.passes()).toBe(true);
    breaker.failed();
    expect(breaker.passes()).toBe(true); // counting starts again
  });

  it('holds callers in ready() until the pause is over', async () => {
    const breaker = new CircuitBreaker({ failureThreshold: 1, openMs: 500, maxOpenMs: 500 });
    breaker.failed();
    let through = false;
    const waiting = breaker.ready().then(() => (through = true));
    await vi.advanceTimersByTimeAsync(400);
    expect(through).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    await waiting;
    expect(through).toBe(true);
  });
});

describe('wire format', () => {
  const records = [0, 1, 2].map((i) => toMemoryRecord('batch-key', tenantA, i, { content: `m${i}` }));

  it('derives the Idempotency-Key from the memory ids only', () => {
    const ids = records.map((r) => r.memoryId);
    expect(idempotencyKey(ids)).toBe(idempotencyKey([...ids]));
    expect(idempotencyKey(ids)).not.toBe(idempotencyKey(ids.slice(0, 2)));
    expect(idempotencyKey(ids)).toMatch(/^bm-[0-9a-f]{40}$/);
  });

  it('reads target ids and per-item refusals from the answers it understands', () => {
    expect(readAnswer('papr', records.slice(0, 1), '{"data":[{"memoryId":"p1"}]}', '/v1/memory')).toEqual([{ ok: true, sinkId: 'p1' }]);
    expect(readAnswer('papr', records, '{"errors":[{"index":1,"error":"bad","code":400}]}', '/v1/memory/batch')).toEqual([
      { ok: true, sinkId: null },
      { ok: false, status: 400, message: 'bad' },
      { ok: true, sinkId: null },
    ]);
    const ndjson = records.map((r, i) => JSON.stringify({ memory_id: r.memoryId, id: `n${i}` })).join('\n');
    expect(readAnswer('ndjson', records, ndjson, '').map((a) => a.ok && a.sinkId)).toEqual(['n0', 'n1', 'n2']);
    expect(readAnswer('ndjson', records, 'accepted', '')).toEqual(records.map(() => ({ ok: true, sinkId: null })));
  });
});
