import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codecs, decodeSegment, encodeSegment, headerBytes, segmentItems, segmentKey, Segmenter } from '../../src/domain/codec.ts';

const items = fc.array(
  fc.record({ content: fc.string({ minLength: 1, maxLength: 200, unit: 'grapheme' }), n: fc.integer() }),
  { minLength: 1, maxLength: 50 },
);

function rawOf(list: unknown[]): Uint8Array {
  return Buffer.from(list.map((item) => JSON.stringify(item)).join('\n') + '\n');
}

describe('segment codec', () => {
  it.each(codecs)('round-trips any items through %s', (codec) => {
    fc.assert(
      fc.property(items, fc.nat(1_000_000), (list, firstIndex) => {
        const bytes = encodeSegment(rawOf(list), { codec, firstIndex, itemCount: list.length });
        const decoded = decodeSegment(bytes);
        expect(decoded.ok).toBe(true);
        if (!decoded.ok) return;
        expect(decoded.value.header).toMatchObject({ codec, firstIndex, itemCount: list.length, version: 1 });
        expect(segmentItems(decoded.value)).toEqual({ ok: true, value: list });
      }),
      { numRuns: 60 },
    );
  });

  it.each(codecs)('detects any single flipped byte in a %s segment', (codec) => {
    const list = Array.from({ length: 200 }, (_, i) => ({ content: `memory ${i} about the weather in town ${i % 7}` }));
    const bytes = encodeSegment(rawOf(list), { codec, firstIndex: 0, itemCount: list.length });
    fc.assert(
      fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (position, mask) => {
        const copy = Uint8Array.from(bytes);
        copy[position]! ^= mask;
        const decoded = decodeSegment(copy);
        expect(decoded.ok).toBe(false);
        if (!decoded.ok) expect(decoded.error.kind).toBe('segment_corrupt');
      }),
      { numRuns: 200 },
    );
  });

  it('names a checksum mismatch as such', () => {
    const raw = rawOf([{ content: 'a' }, { content: 'b' }]);
    const bytes = encodeSegment(raw, { codec: 'gzip', firstIndex: 0, itemCount: 2 });
    const tampered = Buffer.from(bytes);
    tampered[headerBytes - 1]! ^= 1; // inside the stored digest
    const decoded = decodeSegment(tampered);
    expect(!decoded.ok && decoded.error.reason).toMatch(/SHA-256 checksum mismatch/);
  });

  it('rejects truncated input and a foreign file', () => {
    expect(decodeSegment(new Uint8Array(10)).ok).toBe(false);
    expect(decodeSegment(Buffer.from('x'.repeat(100))).ok).toBe(false);
  });

  it('compresses realistic text', () => {
    const list = Array.from({ length: 1000 }, (_, i) => ({ content: `The user said they prefer tea over coffee, note ${i}.`, type: 'chat' }));
    const raw = rawOf(list);
    for (const codec of codecs) {
      expect(encodeSegment(raw, { codec, firstIndex: 0, itemCount: 1000 }).byteLength).toBeLessThan(raw.byteLength / 4);
    }
  });
});

describe('segmenter', () => {
  it('cuts by item count and by bytes, keeping every item once and in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 300 }), { maxLength: 400 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 64, max: 4096 }),
        (lines, maxItems, maxRawBytes) => {
          const segmenter = new Segmenter({ maxItems, maxRawBytes });
          const segments = lines.flatMap((line) => segmenter.add(JSON.stringify(line)));
          const last = segmenter.finish();
          if (last) segments.push(last);
          let expectedFirst = 0;
          const seen: string[] = [];
          for (const segment of segments) {
            expect(segment.firstIndex).toBe(expectedFirst);
            expect(segment.itemCount).toBeLessThanOrEqual(maxItems);
            const text = Buffer.from(segment.ndjson).toString();
            const parts = text.slice(0, -1).split('\n');
            expect(parts).toHaveLength(segment.itemCount);
            // Over the byte limit only when a single item alone is larger than it.
            if (segment.itemCount > 1) expect(segment.ndjson.byteLength).toBeLessThanOrEqual(maxRawBytes);
            seen.push(...parts.map((p) => JSON.parse(p) as string));
            expectedFirst += segment.itemCount;
          }
          expect(seen).toEqual(lines);
          expect(segmenter.itemCount).toBe(lines.length);
        },
      ),
    );
  });

  it('names segment objects in order with the codec extension', () => {
    expect(segmentKey('org/b_1', 0, 'zstd')).toBe('org/b_1/segment-000001.zst');
    expect(segmentKey('org/b_1', 41, 'brotli')).toBe('org/b_1/segment-000042.br');
  });
});
