// The upload's shortcuts (issue 18) give what the paths they skip give: the hand check of the common memory the same
// verdict and value as the zod schema, segment compression off the event loop the same bytes, the body fingerprint
// fed per segment the same digest as fed per memory.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codecs, encodeSegment, encodeSegmentAsync, Segmenter } from '../../src/domain/codec.ts';
import { BodyFingerprint } from '../../src/domain/idempotency.ts';
import { defaultMemoryLimits, memoryItemSchema, memoryItemValidator, validateMemoryItem } from '../../src/domain/memory.ts';

const limits = { ...defaultMemoryLimits, maxContentBytes: 24, maxMetadataBytes: 60, maxMetadataDepth: 2 };
const text = (max: number) => fc.oneof(fc.string({ maxLength: max, unit: 'grapheme' }), fc.constantFrom('', ' ', '\n\t', 'é'.repeat(9), '😀'.repeat(7)));
const anyField = fc.oneof(fc.constant(null), fc.integer(), fc.boolean(), fc.jsonValue({ maxDepth: 3 }));
const memory = fc.record(
  {
    content: fc.oneof(text(30), anyField),
    type: fc.oneof(text(70), anyField),
    external_id: fc.oneof(text(260), anyField),
    metadata: fc.oneof(fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }), anyField),
    user_id: text(10),
    __proto__: fc.constant({}),
  },
  { requiredKeys: [] },
);

describe('the common memory checked without zod', () => {
  const fast = memoryItemValidator(limits);
  const zodOnly = memoryItemSchema(limits);

  it('gives the same verdict, value and field order as the schema, for any item', () => {
    fc.assert(
      fc.property(fc.oneof(memory, anyField), (item) => {
        // Parsed from JSON text, as the body reader hands items over (own "__proto__" keys included).
        const raw: unknown = JSON.parse(JSON.stringify(item));
        const a = validateMemoryItem(fast, raw, 3);
        const b = validateMemoryItem(zodOnly, raw, 3);
        expect(a.ok).toBe(b.ok);
        if (a.ok && b.ok) expect(JSON.stringify(a.value)).toBe(JSON.stringify(b.value));
        else expect(a).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });

  it('decides the limits exactly as the schema does', () => {
    const cases = [
      { content: 'x'.repeat(24) },
      { content: 'x'.repeat(25) },
      { content: 'é'.repeat(12) },
      { content: 'é'.repeat(13) },
      { content: 'ok', type: 't'.repeat(64) },
      { content: 'ok', type: 't'.repeat(65) },
      { content: 'ok', external_id: 'e'.repeat(256) },
      { content: 'ok', external_id: 'e'.repeat(257) },
      { content: 'ok', metadata: { a: { b: 1 } } },
      { content: 'ok', metadata: { a: { b: { c: 1 } } } },
      { content: 'ok', metadata: { a: 'y'.repeat(52) } },
      { content: 'ok', metadata: { a: 'y'.repeat(53) } },
      { content: 'ok', metadata: [] },
    ];
    for (const item of cases) {
      const raw = JSON.parse(JSON.stringify(item)) as unknown;
      expect(validateMemoryItem(fast, raw, 0), JSON.stringify(item)).toEqual(validateMemoryItem(zodOnly, raw, 0));
    }
  });
});

describe('segments compressed off the event loop', () => {
  it.each(codecs)('are the same bytes as compressed in line (%s)', async (codec) => {
    const raw = Buffer.from(Array.from({ length: 300 }, (_, i) => JSON.stringify({ content: `memory ${i} `.repeat(i % 17 + 1) })).join('\n') + '\n');
    const meta = { codec, firstIndex: 1000, itemCount: 300 };
    expect(Buffer.from(await encodeSegmentAsync(raw, meta)).equals(Buffer.from(encodeSegment(raw, meta)))).toBe(true);
    expect(Buffer.from(await encodeSegmentAsync(raw, { ...meta, level: 1 })).equals(Buffer.from(encodeSegment(raw, { ...meta, level: 1 })))).toBe(true);
  });
});

describe('the body fingerprint fed per segment', () => {
  it('is the digest of the same memories fed one by one', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => JSON.stringify({ content: s })), { minLength: 1, maxLength: 5 }), { maxLength: 5 }), (segments) => {
        const perMemory = new BodyFingerprint();
        const perSegment = new BodyFingerprint();
        for (const lines of segments) {
          for (const line of lines) perMemory.addMemory(line);
          perSegment.addLines(Buffer.from(lines.join('\n') + '\n'));
        }
        expect(perSegment.finish({ batch_id: 'b' })).toBe(perMemory.finish({ batch_id: 'b' }));
      }),
    );
  });
});

describe('segments filled in place', () => {
  it('hold their lines joined by newlines, cut where the limits say, however the buffer grew', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 90_000 }), fc.constantFrom('a', 'é', '😀')), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 12 }),
        (sizes, maxItems) => {
          const maxRawBytes = 256 * 1024;
          const lines = sizes.map(([n, unit], i) => JSON.stringify({ content: `${i}${unit.repeat(n / 4)}` }));
          const segmenter = new Segmenter({ maxItems, maxRawBytes });
          const segments = lines.flatMap((line) => segmenter.add(line));
          const last = segmenter.finish();
          if (last) segments.push(last);
          // What the segments must be: lines in order, cut before a line that would pass the bytes, after maxItems.
          const expected: string[][] = [[]];
          let bytes = 0;
          for (const line of lines) {
            const lineBytes = Buffer.byteLength(line) + 1;
            if (expected.at(-1)!.length > 0 && bytes + lineBytes > maxRawBytes) (expected.push([]), (bytes = 0));
            expected.at(-1)!.push(line);
            bytes += lineBytes;
            if (expected.at(-1)!.length >= maxItems) (expected.push([]), (bytes = 0));
          }
          if (expected.at(-1)!.length === 0) expected.pop();
          expect(segments.map((segment) => Buffer.from(segment.ndjson).toString('utf8'))).toEqual(expected.map((group) => group.join('\n') + '\n'));
          expect(segments.map((segment) => segment.itemCount)).toEqual(expected.map((group) => group.length));
          expect(segments.map((segment) => segment.firstIndex)).toEqual(expected.map((_, i) => expected.slice(0, i).flat().length));
        },
      ),
      { numRuns: 60 },
    );
  });
});
