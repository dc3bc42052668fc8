// A memory's fingerprint is stored and compared with later writes of the same external id (upsert): its text must
// never change between versions, or every re-import would report `updated`. The reference below is the first
// implementation, kept here as the specification the faster one in src/domain/memory.ts is checked against.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryFingerprint } from '../../src/domain/memory.ts';

function referenceCanonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(referenceCanonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, field]) => field !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, field]) => `${JSON.stringify(key)}:${referenceCanonicalJson(field)}`).join(',')}}`;
}

const referenceFingerprint = (memory: { content: string; type: string | null; metadata: unknown; attributes: unknown }) =>
  createHash('sha256')
    .update(referenceCanonicalJson({ c: memory.content, t: memory.type, m: memory.metadata, a: memory.attributes }))
    .digest('hex');

describe('memoryFingerprint', () => {
  it('is the same for a memory stored by earlier versions (pinned value)', () => {
    const memory = { content: 'the user prefers tea', type: 'note', metadata: { z: 1, a: [1, { d: null, c: 'x' }], 'é': true }, attributes: null };
    // Computed with the first implementation (the reference) when this test was written.
    expect(memoryFingerprint(memory as never)).toBe('5d7034e9bf7ff8948fb7d91f535f03e1f45adb4b85e33ac1c6af604690303152');
    expect(referenceFingerprint(memory)).toBe('5d7034e9bf7ff8948fb7d91f535f03e1f45adb4b85e33ac1c6af604690303152');
  });

  it('ignores key order and undefined fields, and matches the reference on any JSON value', () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.string(), { nil: null }), fc.jsonValue(), fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: null }), (content, type, metadata, attributes) => {
        const memory = { content, type, metadata, attributes };
        expect(memoryFingerprint(memory as never)).toBe(referenceFingerprint(memory));
      }),
      { numRuns: 500 },
    );
    const a = { content: 'c', type: null, metadata: { b: 1, a: 2, u: undefined }, attributes: { y: [1, 2], x: 'v' } };
    const b = { content: 'c', type: null, metadata: { a: 2, b: 1 }, attributes: { x: 'v', y: [1, 2] } };
    expect(memoryFingerprint(a as never)).toBe(memoryFingerprint(b as never));
  });
});
