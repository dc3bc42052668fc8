import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addOutcome,
  addWriteCounts,
  checkSegmentOutcome,
  countsOf,
  emptyLedger,
  emptyWriteCounts,
  recordOutcome,
  type SegmentOutcome,
  writtenOf,
} from '../../src/domain/progress.ts';

const outcomes = fc
  .array(fc.record({ created: fc.nat(400), updated: fc.nat(300), unchanged: fc.nat(300), failed: fc.nat(1000) }), { minLength: 1, maxLength: 40 })
  .map((list) => list.map(({ failed, ...written }, segment) => ({ segment, succeeded: written.created + written.updated + written.unchanged, failed, written })));

/** Deliveries: every outcome at least once, some repeated, in any order. */
const deliveries = outcomes.chain((list) =>
  fc
    .tuple(fc.array(fc.nat(list.length - 1), { maxLength: 60 }), fc.infiniteStream(fc.nat()))
    .map(([repeats]) => ({ list, repeats }))
    .chain(({ list, repeats }) => fc.shuffledSubarray([...list, ...repeats.map((i) => list[i]!)], { minLength: list.length + repeats.length }).map((order) => ({ list, order }))),
);

function replay(order: SegmentOutcome[], total: number) {
  let ledger = emptyLedger(total);
  let stored = { total, processed: 0, succeeded: 0, failed: 0 };
  const seen: number[] = [];
  for (const outcome of order) {
    const next = recordOutcome(ledger, outcome);
    ledger = next.ledger;
    if (next.applied) stored = addOutcome(stored, outcome);
    seen.push(countsOf(ledger).processed);
  }
  return { ledger, stored, seen };
}

describe('progress ledger', () => {
  it('gives the same exact counts for any order and any duplication of segment outcomes', () => {
    fc.assert(
      fc.property(deliveries, ({ list, order }) => {
        const total = list.reduce((sum, o) => sum + o.succeeded + o.failed, 0);
        const expected = {
          total,
          processed: total,
          succeeded: list.reduce((s, o) => s + o.succeeded, 0),
          failed: list.reduce((s, o) => s + o.failed, 0),
        };
        const { ledger, stored } = replay(order, total);
        expect(countsOf(ledger)).toEqual(expected);
        // The write outcomes count once per segment too, and add up to succeeded.
        const written = writtenOf(ledger);
        expect(written).toEqual(list.reduce((sum, o) => addWriteCounts(sum, o.written), emptyWriteCounts()));
        expect(written.created + written.updated + written.unchanged).toBe(expected.succeeded);
        // Stores that keep counters instead of the ledger reach the same numbers.
        expect(stored).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('only ever moves counts forward', () => {
    fc.assert(
      fc.property(deliveries, ({ list, order }) => {
        const { seen } = replay(order, list.length);
        expect(seen.every((value, i) => i === 0 || value >= seen[i - 1]!)).toBe(true);
      }),
    );
  });

  it('keeps the first outcome of a segment when a different one arrives later', () => {
    const first = recordOutcome(emptyLedger(10), { segment: 0, succeeded: 10, failed: 0, written: { created: 10, updated: 0, unchanged: 0 } });
    const second = recordOutcome(first.ledger, { segment: 0, succeeded: 0, failed: 10, written: emptyWriteCounts() });
    expect(second.applied).toBe(false);
    expect(countsOf(second.ledger)).toEqual({ total: 10, processed: 10, succeeded: 10, failed: 0 });
    expect(writtenOf(second.ledger)).toEqual({ created: 10, updated: 0, unchanged: 0 });
  });

  it('refuses a segment outcome whose write outcomes do not add up to its succeeded', () => {
    expect(() => checkSegmentOutcome({ segment: 3, succeeded: 5, failed: 0, written: { created: 2, updated: 2, unchanged: 0 } })).toThrow(/segment 3.*\(4\) is not succeeded \(5\)/);
    expect(() => checkSegmentOutcome({ segment: 0, succeeded: 0, failed: -1, written: emptyWriteCounts() })).toThrow(RangeError);
    expect(() => checkSegmentOutcome({ segment: 0, succeeded: 5, failed: 1, written: { created: 1, updated: 1, unchanged: 3 } })).not.toThrow();
  });
});
