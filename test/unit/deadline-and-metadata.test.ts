// The domain rules behind completion windows, expired items, the SSE progress version and batch metadata.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { batchMetadataIssues, parseCompletionWindow } from '../../src/domain/batch.ts';
import { batchStatuses, begin, canTransition, expire, expiredItems, finish, progressVersion, requestCancel, type BatchStatus } from '../../src/domain/lifecycle.ts';
import type { Counts } from '../../src/domain/progress.ts';

const counts = (total: number, succeeded: number, failed: number): Counts => ({ total, processed: succeeded + failed, succeeded, failed });

describe('expiry', () => {
  it('ends a pending or processing batch expired, stamped, with the reason', () => {
    for (const status of ['pending', 'processing'] as const) {
      const step = expire({ status, counts: counts(10, 3, 1) }, '2026-01-01T00:00:10.000Z', '10s');
      expect(step).toEqual({
        ok: true,
        value: { status: 'expired', completedAt: '2026-01-01T00:00:10.000Z', error: 'the completion window of 10s passed with 6 memories not processed' },
      });
    }
  });

  it('leaves a cancelling or final batch to its own ending', () => {
    for (const status of ['cancelling', 'completed', 'failed', 'cancelled', 'expired'] as const) {
      expect(expire({ status, counts: counts(10, 3, 1) }, 'now', '10s').ok).toBe(false);
    }
  });

  it('counts the items without an outcome as expired, only in an expired batch', () => {
    expect(expiredItems({ status: 'expired', counts: counts(10, 3, 1) })).toBe(6);
    expect(expiredItems({ status: 'failed', counts: counts(10, 3, 1) })).toBe(0);
    expect(expiredItems({ status: 'processing', counts: counts(10, 3, 1) })).toBe(0);
    fc.assert(
      fc.property(fc.nat(1000), fc.nat(1000), fc.nat(1000), (succeeded, failed, rest) => {
        const c = counts(succeeded + failed + rest, succeeded, failed);
        expect(c.succeeded + c.failed + expiredItems({ status: 'expired', counts: c })).toBe(c.total);
      }),
    );
  });
});

describe('progress version (the SSE event id)', () => {
  it('grows with every legal status change and every item outcome, and stays put otherwise', () => {
    for (const from of batchStatuses) {
      for (const to of batchStatuses) {
        if (!canTransition(from, to)) continue;
        const c = counts(100, 5, 5);
        expect(progressVersion({ status: to, counts: c }), `${from} -> ${to}`).toBeGreaterThan(progressVersion({ status: from, counts: c }));
      }
    }
    expect(progressVersion({ status: 'processing', counts: counts(100, 6, 5) })).toBe(progressVersion({ status: 'processing', counts: counts(100, 5, 5) }) + 1);
  });

  it('is strictly larger for any later state along any run of the lifecycle', () => {
    // Random runs: outcomes arrive, then one legal path of status changes; every step must raise the version.
    const run = fc.record({
      outcomes: fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 20 }),
      cancel: fc.boolean(),
      ending: fc.constantFrom('finish', 'expire'),
    });
    fc.assert(
      fc.property(run, ({ outcomes, cancel, ending }) => {
        let state: { status: BatchStatus; counts: Counts } = { status: 'pending', counts: counts(10_000, 0, 0) };
        const versions = [progressVersion(state)];
        const apply = (patch: { ok: boolean; value?: { status: BatchStatus } }) => {
          if (patch.ok && patch.value) state = { ...state, status: patch.value.status };
          versions.push(progressVersion(state));
        };
        apply(begin(state, 'now'));
        for (const n of outcomes) {
          state = { ...state, counts: counts(10_000, state.counts.succeeded + n, state.counts.failed) };
          versions.push(progressVersion(state));
        }
        if (cancel) apply(requestCancel(state));
        apply(ending === 'expire' && !cancel ? expire(state, 'now', '1h') : finish(state, 'now'));
        for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBeGreaterThan(versions[i - 1]!);
      }),
    );
  });
});

describe('completion window', () => {
  it('reads a number and a unit, within 5 s and 7 days', () => {
    expect(parseCompletionWindow('10s')).toEqual({ ok: true, ms: 10_000 });
    expect(parseCompletionWindow('24h')).toEqual({ ok: true, ms: 86_400_000 });
    expect(parseCompletionWindow('7d')).toEqual({ ok: true, ms: 604_800_000 });
    for (const bad of ['4s', '8d', '169h', '0s', '1.5h', '24', 'h', ' 24h', '24H', '-1h', '010s', 24, null, {}]) {
      expect(parseCompletionWindow(bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });
});

describe('batch metadata', () => {
  it('accepts up to 16 string pairs with plain keys', () => {
    expect(batchMetadataIssues({})).toEqual([]);
    expect(batchMetadataIssues(Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(512)])))).toEqual([]);
  });

  it('names the pair that is wrong', () => {
    expect(batchMetadataIssues(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])))).toEqual([
      { path: 'metadata', message: 'may hold at most 16 pairs, not 17' },
    ]);
    expect(batchMetadataIssues({ job: 1 })).toEqual([{ path: 'metadata.job', message: 'must be a string' }]);
    expect(batchMetadataIssues({ 'a.b': 'x' })).toEqual([{ path: 'metadata.a.b', message: 'key must match [A-Za-z0-9_-]{1,64}' }]);
    expect(batchMetadataIssues({ job: 'x'.repeat(513) })).toEqual([{ path: 'metadata.job', message: 'must be at most 512 characters' }]);
    expect(batchMetadataIssues(['a'])).toEqual([{ path: 'metadata', message: 'must be an object of string values' }]);
    expect(batchMetadataIssues('a')).toEqual([{ path: 'metadata', message: 'must be an object of string values' }]);
  });
});
