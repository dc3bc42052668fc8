// Measurement 1: compression ratio and speed of each codec and level on the corpus, cut into segments exactly as
// the product cuts them (Segmenter with the default limits), against gzip level 6 as the baseline.
import { type Codec, compress, decompress, Segmenter } from '../src/domain/codec.ts';
import { defaultSettings } from '../src/app/services.ts';
import { corpus } from './corpus.ts';

export interface CompressionRow {
  codec: Codec;
  level: number;
  isDefault: boolean;
  isBaseline: boolean;
  rawBytes: number;
  storedBytes: number;
  /** raw / stored. */
  ratio: number;
  compressMBps: number;
  decompressMBps: number;
  /** This row's stored bytes relative to the baseline's (lower is better). */
  sizeVsBaseline: number;
  /** This row's compression speed relative to the baseline's (higher is better). */
  speedVsBaseline: number;
}

export interface CompressionResult {
  memories: number;
  segments: number;
  rawBytes: number;
  rounds: number;
  segmentMaxItems: number;
  segmentMaxRawBytes: number;
  rows: CompressionRow[];
}

export const candidates: { codec: Codec; level: number }[] = [
  { codec: 'zstd', level: 1 },
  { codec: 'zstd', level: 3 },
  { codec: 'zstd', level: 9 },
  { codec: 'gzip', level: 6 },
  { codec: 'gzip', level: 9 },
  { codec: 'brotli', level: 4 },
  { codec: 'brotli', level: 11 },
];
const baseline = { codec: 'gzip', level: 6 } as const;

function segmentsOf(memories: number): Uint8Array[] {
  const segmenter = new Segmenter({ maxItems: defaultSettings.segmentMaxItems, maxRawBytes: defaultSettings.segmentMaxRawBytes });
  const segments: Uint8Array[] = [];
  for (const item of corpus(memories)) for (const full of segmenter.add(JSON.stringify(item))) segments.push(full.ndjson);
  const last = segmenter.finish();
  if (last) segments.push(last.ndjson);
  return segments;
}

/** Ms of one call of `work`. */
function once(work: () => void): number {
  const start = performance.now();
  work();
  return performance.now() - start;
}

/**
 * Codecs are timed in rounds, each round running every codec once over all segments, and each codec's fastest
 * pass counts: a burst of load from a neighbour then slows one pass, not one codec's whole figure. A codec whose
 * pass takes longer than `slowPassMs` (brotli 11) gets one pass only.
 */
export function runCompression(options: { memories: number; rounds: number; log: (line: string) => void }): CompressionResult {
  const slowPassMs = 3000;
  const segments = segmentsOf(options.memories);
  const rawBytes = segments.reduce((sum, s) => sum + s.byteLength, 0);
  const state = candidates.map(({ codec, level }) => ({ codec, level, stored: [] as Uint8Array[], slow: false, compressMs: Infinity, decompressMs: Infinity }));
  for (const entry of state) {
    // Warm-up, and the stored bytes (identical on every pass). A slow codec's warm-up is its one measured pass.
    const ms = once(() => (entry.stored = segments.map((segment) => compress(entry.codec, segment, entry.level))));
    if (ms > slowPassMs) {
      entry.slow = true;
      entry.compressMs = ms;
    }
  }
  for (let round = 0; round < options.rounds; round++) {
    for (const entry of state) {
      if (!entry.slow) {
        entry.compressMs = Math.min(entry.compressMs, once(() => segments.forEach((segment) => compress(entry.codec, segment, entry.level))));
      }
      entry.decompressMs = Math.min(entry.decompressMs, once(() => entry.stored.forEach((body, i) => decompress(entry.codec, body, segments[i]!.byteLength))));
    }
  }
  const measured = state.map(({ codec, level, stored, compressMs, decompressMs }) => {
    const storedBytes = stored.reduce((sum, s) => sum + s.byteLength, 0);
    const mb = rawBytes / 1e6;
    const row = { codec, level, rawBytes, storedBytes, ratio: rawBytes / storedBytes, compressMBps: mb / (compressMs / 1000), decompressMBps: mb / (decompressMs / 1000) };
    options.log(`  ${codec} ${level}: ratio ${row.ratio.toFixed(2)}, ${row.compressMBps.toFixed(1)} MB/s compress, ${row.decompressMBps.toFixed(0)} MB/s decompress`);
    return row;
  });
  const base = measured.find((r) => r.codec === baseline.codec && r.level === baseline.level)!;
  return {
    memories: options.memories,
    segments: segments.length,
    rawBytes,
    rounds: options.rounds,
    segmentMaxItems: defaultSettings.segmentMaxItems,
    segmentMaxRawBytes: defaultSettings.segmentMaxRawBytes,
    rows: measured.map((row) => ({
      ...row,
      isDefault: row.codec === defaultSettings.codec && row.level === defaultSettings.codecLevel,
      isBaseline: row === base,
      sizeVsBaseline: row.storedBytes / base.storedBytes,
      speedVsBaseline: row.compressMBps / base.compressMBps,
    })),
  };
}
