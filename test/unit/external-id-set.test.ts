import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExternalIdSet } from '../../src/domain/external-id-set.ts';

describe('ExternalIdSet', () => {
  it('answers as a Map of the first value per id would, for any sequence of ids', () => {
    // Few distinct ids drawn from a small alphabet, so repeats and equal hashes' neighbours are common; plus wide
    // (non-Latin-1) and surrogate-pair ids, and ids of up to 256 units.
    const id = fc.oneof(
      fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 4 }),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 256 }),
    );
    fc.assert(
      fc.property(fc.array(id, { maxLength: 3000 }), (ids) => {
        const set = new ExternalIdSet();
        const reference = new Map<string, number>();
        ids.forEach((value, index) => {
          const expected = reference.get(value);
          if (expected === undefined) reference.set(value, index);
          expect(set.getOrAdd(value, index)).toBe(expected);
        });
        expect(set.size).toBe(reference.size);
      }),
      { numRuns: 60 },
    );
  });

  it('tells apart ids that differ only in their last unit or in a unit above 255, across table and chunk growth', () => {
    const set = new ExternalIdSet();
    const count = 100_000;
    let known = 0;
    for (let i = 0; i < count; i++) if (set.getOrAdd(`chat-${i}-ab${i % 7}`, i) !== undefined) known += 1;
    expect(known).toBe(0);
    expect(set.getOrAdd('ŧ-0', count)).toBeUndefined();
    expect(set.getOrAdd('t-0', count + 1)).toBeUndefined();
    for (let i = 0; i < count; i += 997) expect(set.getOrAdd(`chat-${i}-ab${i % 7}`, 0)).toBe(i);
    expect(set.getOrAdd(`chat-5-ab6`, 0)).toBeUndefined();
    expect(set.getOrAdd('ŧ-0', 0)).toBe(count);
    expect(set.getOrAdd('t-0', 0)).toBe(count + 1);
    expect(set.size).toBe(count + 3);
  });

  it('tells apart two ids whose hashes are equal', () => {
    // Found by searching note-0, note-1, ... for two ids that hash alike (FNV-1a and the final mix), so that only the
    // character comparison can tell them apart.
    const set = new ExternalIdSet();
    expect(set.getOrAdd('note-6485', 1)).toBeUndefined();
    expect(set.getOrAdd('note-486720', 2)).toBeUndefined();
    expect(set.getOrAdd('note-6484', 3)).toBeUndefined();
    expect(set.getOrAdd('note-486721', 4)).toBeUndefined();
    expect([set.getOrAdd('note-486720', 0), set.getOrAdd('note-6485', 0), set.getOrAdd('note-486721', 0)]).toEqual([2, 1, 4]);
  });
});
