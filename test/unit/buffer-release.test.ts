import { describe, expect, it } from 'vitest';
import { releaseBuffer, releaseMaxKeptBytes } from '../../src/domain/buffer-release.ts';
import { decodeSegment, encodeSegmentAsync, segmentItems, Segmenter } from '../../src/domain/codec.ts';
import { ExternalIdSet } from '../../src/domain/external-id-set.ts';

const arrayBuffers = () => process.memoryUsage().arrayBuffers;

describe('releaseBuffer', () => {
  it('gives a large buffer its memory back at once, without waiting for a collection', () => {
    const bytes = 8 * 2 ** 20;
    const view = Buffer.allocUnsafe(bytes).fill(7);
    const before = arrayBuffers();
    expect(releaseBuffer(view)).toBe(bytes);
    expect(before - arrayBuffers()).toBeGreaterThanOrEqual(bytes);
    expect(view.byteLength).toBe(0);
    expect(view.buffer.detached).toBe(true);
    // Once released, a second call has nothing to give.
    expect(releaseBuffer(view)).toBe(0);
  });

  it('leaves alone what others may still read: a pooled Buffer, a small buffer, shared memory', () => {
    const pooled = Buffer.from('a pooled buffer shares its ArrayBuffer with others');
    expect(releaseBuffer(pooled)).toBe(0);
    expect(pooled.toString()).toBe('a pooled buffer shares its ArrayBuffer with others');
    const small = new Uint8Array(releaseMaxKeptBytes).fill(1);
    expect(releaseBuffer(small)).toBe(0);
    expect(small[releaseMaxKeptBytes - 1]).toBe(1);
    const shared = new Uint8Array(new SharedArrayBuffer(4 * 2 ** 20)).fill(2);
    expect(releaseBuffer(shared)).toBe(0);
    expect(shared[0]).toBe(2);
    expect(releaseBuffer(undefined)).toBe(0);
  });
});

describe('what releases its buffers', () => {
  it('an ExternalIdSet, cleared, frees its arrays at once and starts again empty', () => {
    const set = new ExternalIdSet();
    for (let i = 0; i < 200_000; i++) set.getOrAdd(`external-id-${i}`, i);
    const before = arrayBuffers();
    set.clear();
    // 200,000 entries hold 262,144-entry arrays (7.3 MiB) and about 3.5 MiB of characters.
    expect(before - arrayBuffers()).toBeGreaterThan(8 * 2 ** 20);
    expect(set.size).toBe(0);
    expect(set.getOrAdd('external-id-5', 1)).toBeUndefined();
    expect(set.getOrAdd('external-id-5', 2)).toBe(1);
  });

  it('a Segmenter cuts the same segments while it frees the buffers it outgrows, and encoding frees the compressor output', async () => {
    const lines = Array.from({ length: 5_003 }, (_, i) => JSON.stringify({ content: `memory ${i} `.repeat(1 + (i % 40)) }));
    const segmenter = new Segmenter({ maxItems: 1_000, maxRawBytes: 256 * 1024 });
    // Every segment is cut before any is encoded: a buffer freed while a cut segment still used it would show here.
    const segments = [...lines.flatMap((line) => segmenter.add(line)), segmenter.finish()].filter((raw) => raw !== undefined);
    const decoded: unknown[] = [];
    for (const raw of segments) {
      const bytes = await encodeSegmentAsync(raw.ndjson, { codec: 'zstd', firstIndex: raw.firstIndex, itemCount: raw.itemCount });
      const segment = decodeSegment(bytes);
      if (!segment.ok) throw new Error(segment.error.reason);
      const items = segmentItems(segment.value);
      if (!items.ok) throw new Error(items.error.reason);
      decoded.push(...items.value);
    }
    expect(segments.length).toBeGreaterThan(5);
    expect(decoded).toEqual(lines.map((line) => JSON.parse(line)));
  });
});
