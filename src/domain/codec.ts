// The segment format. A segment is a run of NDJSON memories, compressed, behind a fixed header:
//   magic "BMSG" | version u8 | codec u8 | reserved u16 | firstIndex u32 | itemCount u32 | rawBytes u32 | sha256[32]
// The SHA-256 covers the header (without the digest) and the compressed body, so any flipped byte is detected,
// even one in a field the decompressor ignores (a gzip timestamp), and before anything is decompressed.
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { releaseBuffer } from './buffer-release.ts';
import type { SegmentCorrupt } from './errors.ts';
import { err, ok, type Result } from './result.ts';

export const codecs = ['zstd', 'gzip', 'brotli'] as const;
export type Codec = (typeof codecs)[number];

/** A batch's claim check: where its segments are and their sizes in bytes (raw NDJSON and as stored). */
export interface PayloadInfo {
  codec: Codec;
  /** Where the segments live in the payload store; segment names are appended by `segmentKey`. */
  prefix: string;
  segments: number;
  rawBytes: number;
  storedBytes: number;
}

export const codecExtension: Record<Codec, string> = { zstd: 'zst', gzip: 'gz', brotli: 'br' };
export const codecContentEncoding: Record<Codec, string> = { zstd: 'zstd', gzip: 'gzip', brotli: 'br' };
export const defaultLevel: Record<Codec, number> = { zstd: 3, gzip: 6, brotli: 4 };

const magic = [0x42, 0x4d, 0x53, 0x47]; // "BMSG"
const formatVersion = 1;
const digestOffset = 20;
export const headerBytes = digestOffset + 32;

export interface SegmentHeader {
  version: number;
  codec: Codec;
  firstIndex: number;
  itemCount: number;
  rawBytes: number;
  sha256: string;
}

export interface DecodedSegment {
  header: SegmentHeader;
  ndjson: Uint8Array;
}

export function compress(codec: Codec, raw: Uint8Array, level = defaultLevel[codec]): Uint8Array {
  switch (codec) {
    case 'zstd':
      return zlib.zstdCompressSync(raw, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
    case 'gzip':
      return zlib.gzipSync(raw, { level });
    case 'brotli':
      return zlib.brotliCompressSync(raw, {
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: level,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.byteLength,
        },
      });
  }
}

const zstdCompressAsync = promisify(zlib.zstdCompress);
const gzipAsync = promisify(zlib.gzip);
const brotliCompressAsync = promisify(zlib.brotliCompress);

/**
 * `compress` on libuv's thread pool: the same bytes (same codec, level and parameters), without holding the event
 * loop while it runs, so that an upload's next segment is read and checked meanwhile.
 */
export function compressAsync(codec: Codec, raw: Uint8Array, level = defaultLevel[codec]): Promise<Uint8Array> {
  // One output buffer for the whole segment: with the default 16 KiB, the event loop handles a callback per 16 KiB,
  // a fifth of what compressing in line costs it (measured, 1 MiB zstd segments).
  const chunkSize = Math.max(64 * 1024, raw.byteLength + 1024);
  switch (codec) {
    case 'zstd':
      // The one-shot sync call writes the content size into the frame header; the streamed one only when pledged.
      return zstdCompressAsync(raw, { chunkSize, params: { [zlib.constants.ZSTD_c_compressionLevel]: level }, pledgedSrcSize: raw.byteLength });
    case 'gzip':
      return gzipAsync(raw, { chunkSize, level });
    case 'brotli':
      return brotliCompressAsync(raw, {
        chunkSize,
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: level,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.byteLength,
        },
      });
  }
}

export function decompress(codec: Codec, body: Uint8Array, maxBytes: number): Uint8Array {
  // One output buffer a little larger than the content (whose size the header gives): with the default 16 KiB
  // chunks a 1 MiB segment was 64 buffers joined into a 65th, twice the memory and twice the time (measured: 1.4 ms
  // against 0.7 ms for a 420 KiB segment). Bytes to spare, so that a full buffer never calls for another one; at
  // most 16 MiB (the size comes from a header, checked by its digest but not trusted to size an allocation).
  const options = { maxOutputLength: Math.max(1, maxBytes), chunkSize: Math.min(16 * 2 ** 20, Math.max(64, maxBytes + 64)) };
  switch (codec) {
    case 'zstd':
      return zlib.zstdDecompressSync(body, options);
    case 'gzip':
      return zlib.gunzipSync(body, options);
    case 'brotli':
      return zlib.brotliDecompressSync(body, options);
  }
}

function digest(header: Uint8Array, body: Uint8Array): Buffer {
  return createHash('sha256').update(header.subarray(0, digestOffset)).update(body).digest();
}

/** The header of a segment holding `raw`, its digest still zero. */
function segmentHeader(raw: Uint8Array, meta: { codec: Codec; firstIndex: number; itemCount: number }): Buffer {
  const header = Buffer.alloc(headerBytes);
  header.set(magic, 0);
  header.writeUInt8(formatVersion, 4);
  header.writeUInt8(codecs.indexOf(meta.codec), 5);
  header.writeUInt32BE(meta.firstIndex, 8);
  header.writeUInt32BE(meta.itemCount, 12);
  header.writeUInt32BE(raw.byteLength, 16);
  return header;
}

export function encodeSegment(
  raw: Uint8Array,
  meta: { codec: Codec; firstIndex: number; itemCount: number; level?: number },
): Uint8Array {
  const header = segmentHeader(raw, meta);
  const body = compress(meta.codec, raw, meta.level);
  digest(header, body).copy(header, digestOffset);
  return withHeader(header, body);
}

/** `encodeSegment` with its compression off the event loop (`compressAsync`); the same bytes. */
export async function encodeSegmentAsync(
  raw: Uint8Array,
  meta: { codec: Codec; firstIndex: number; itemCount: number; level?: number },
): Promise<Uint8Array> {
  const header = segmentHeader(raw, meta);
  const body = await compressAsync(meta.codec, raw, meta.level);
  digest(header, body).copy(header, digestOffset);
  return withHeader(header, body);
}

/**
 * The segment's bytes: header then compressed body, in one buffer. The compressor's output buffer (as large as the
 * raw segment) is freed at once rather than at the thread's next full collection (buffer-release.ts).
 */
function withHeader(header: Uint8Array, body: Uint8Array): Uint8Array {
  const bytes = Buffer.concat([header, body]);
  releaseBuffer(body);
  return bytes;
}

export function readHeader(bytes: Uint8Array): Result<SegmentHeader, SegmentCorrupt> {
  if (bytes.byteLength < headerBytes) return err(corrupt(`segment is ${bytes.byteLength} bytes, shorter than its header`));
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!magic.every((byte, i) => view[i] === byte)) return err(corrupt('bad magic number'));
  const version = view.readUInt8(4);
  if (version !== formatVersion) return err(corrupt(`unsupported format version ${version}`));
  const codec = codecs[view.readUInt8(5)];
  if (codec === undefined) return err(corrupt(`unknown codec id ${view.readUInt8(5)}`));
  return ok({
    version,
    codec,
    firstIndex: view.readUInt32BE(8),
    itemCount: view.readUInt32BE(12),
    rawBytes: view.readUInt32BE(16),
    sha256: view.subarray(digestOffset, headerBytes).toString('hex'),
  });
}

export function decodeSegment(bytes: Uint8Array): Result<DecodedSegment, SegmentCorrupt> {
  const header = readHeader(bytes);
  if (!header.ok) return header;
  const body = bytes.subarray(headerBytes);
  const actual = digest(bytes, body).toString('hex');
  if (actual !== header.value.sha256) {
    return err(corrupt(`SHA-256 checksum mismatch: header says ${header.value.sha256}, content hashes to ${actual}`));
  }
  let ndjson: Uint8Array;
  try {
    ndjson = decompress(header.value.codec, body, header.value.rawBytes);
  } catch (cause) {
    return err(corrupt(`body does not decompress as ${header.value.codec}: ${(cause as Error).message}`));
  }
  if (ndjson.byteLength !== header.value.rawBytes) {
    return err(corrupt(`header says ${header.value.rawBytes} raw bytes, body holds ${ndjson.byteLength}`));
  }
  return ok({ header: header.value, ndjson });
}

function corrupt(reason: string): SegmentCorrupt {
  return { kind: 'segment_corrupt', reason };
}

/** Splits decoded NDJSON back into parsed items. The writer produced it, so a parse failure means corruption. */
export function segmentItems(segment: DecodedSegment): Result<unknown[], SegmentCorrupt> {
  // A view of the decoded bytes, not a copy of them (`Buffer.from` of a Uint8Array copies).
  const { buffer, byteOffset, byteLength } = segment.ndjson;
  const lines = Buffer.from(buffer, byteOffset, byteLength).toString('utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== segment.header.itemCount) {
    return err(corrupt(`header says ${segment.header.itemCount} items, body holds ${lines.length}`));
  }
  try {
    return ok(lines.map((line) => JSON.parse(line) as unknown));
  } catch (cause) {
    return err(corrupt(`a line is not JSON: ${(cause as Error).message}`));
  }
}

export interface RawSegment {
  firstIndex: number;
  itemCount: number;
  ndjson: Uint8Array;
}

/**
 * Cuts a stream of serialized items into raw segments by item count and by bytes.
 * `add` returns the segments that became full; `finish` returns the last partial one.
 */
export class Segmenter {
  readonly #maxItems: number;
  readonly #maxRawBytes: number;
  /** The segment being filled, its lines encoded as they come (no joined string, no second copy). */
  #buffer: Buffer | undefined;
  /** The size the last segment's buffer grew to: the next one starts there (a large batch's segments are alike). */
  #lastCapacity = 0;
  #items = 0;
  #bytes = 0;
  #firstIndex = 0;
  #nextIndex = 0;

  constructor(limits: { maxItems: number; maxRawBytes: number }) {
    this.#maxItems = limits.maxItems;
    this.#maxRawBytes = limits.maxRawBytes;
  }

  get itemCount(): number {
    return this.#nextIndex;
  }

  add(serializedItem: string): RawSegment[] {
    const full: RawSegment[] = [];
    const lineBytes = Buffer.byteLength(serializedItem) + 1;
    if (this.#items > 0 && this.#bytes + lineBytes > this.#maxRawBytes) full.push(this.#cut());
    const buffer = this.#reserve(lineBytes);
    this.#bytes += buffer.write(serializedItem, this.#bytes, 'utf8');
    buffer[this.#bytes++] = 0x0a;
    this.#items += 1;
    this.#nextIndex += 1;
    if (this.#items >= this.#maxItems) full.push(this.#cut());
    return full;
  }

  finish(): RawSegment | undefined {
    return this.#items > 0 ? this.#cut() : undefined;
  }

  /**
   * The segment's buffer with room for `lineBytes` more: it starts at 64 KiB and doubles up to a segment's bytes, so
   * a small batch does not hold a whole segment's worth; a line longer than that gets a buffer sized for it.
   */
  #reserve(lineBytes: number): Buffer {
    const needed = this.#bytes + lineBytes;
    if (this.#buffer && needed <= this.#buffer.byteLength) return this.#buffer;
    const start = this.#buffer ? 2 * this.#buffer.byteLength : Math.max(64 * 1024, this.#lastCapacity);
    const size = Math.max(needed, Math.min(this.#maxRawBytes, start));
    const grown = Buffer.allocUnsafe(size);
    if (this.#buffer) {
      this.#buffer.copy(grown, 0, 0, this.#bytes);
      // Only this segmenter has seen the outgrown buffer: its memory goes back now (buffer-release.ts).
      releaseBuffer(this.#buffer);
    }
    this.#buffer = grown;
    return grown;
  }

  #cut(): RawSegment {
    const segment = {
      firstIndex: this.#firstIndex,
      itemCount: this.#items,
      ndjson: this.#buffer!.subarray(0, this.#bytes),
    };
    this.#firstIndex = this.#nextIndex;
    this.#lastCapacity = this.#buffer!.byteLength;
    this.#buffer = undefined;
    this.#items = 0;
    this.#bytes = 0;
    return segment;
  }
}

export function segmentKey(prefix: string, segment: number, codec: Codec): string {
  return `${prefix}/segment-${String(segment + 1).padStart(6, '0')}.${codecExtension[codec]}`;
}
