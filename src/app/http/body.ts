// Streaming readers for the two submit formats. Neither holds the whole body: items are yielded as they arrive,
// so memory stays flat whatever the batch size. Malformed input throws AppFailure with the line or position.
import { Duplex } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import { UnreadableItem } from '../../domain/invalid-items.ts';
import type { MemoryLimits } from '../../domain/memory.ts';
import { AppFailure, validation } from '../errors.ts';
import { dottedPath, IJsonParser, type IJsonViolation, parseIJsonLine } from './i-json.ts';

function badBody(detail: string, path = ''): AppFailure {
  return new AppFailure(validation(detail, [{ path, message: detail }]));
}

/** An I-JSON violation (see i-json.ts) as a 400 naming its path; `where` says which line, for NDJSON. */
function notIJson(violation: IJsonViolation, prefix: (string | number)[], where = ''): AppFailure {
  const path = dottedPath(prefix, violation.path);
  const detail = `${where}${path || 'the body'} ${violation.message} (bodies must be I-JSON, RFC 7493)`;
  return new AppFailure(validation(detail, [{ path, message: violation.message }]));
}

/**
 * Where the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF) starts in `bytes`, or -1. A sequence cut off by the end of `bytes` counts as invalid only if `final`.
 */
export function firstInvalidUtf8(bytes: Uint8Array, final: boolean): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    let length: number;
    let min = 0x80;
    let max = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) min = 0xa0;
      if (lead === 0xed) max = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) min = 0x90;
      if (lead === 0xf4) max = 0x8f;
    } else return i;
    for (let k = 1; k < length; k += 1) {
      if (i + k >= bytes.length) return final ? i : -1;
      const next = bytes[i + k]!;
      if (k === 1 ? next < min || next > max : next < 0x80 || next > 0xbf) return i;
    }
    i += length;
  }
  return -1;
}

function countNewlines(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) count += 1;
  return count;
}

/** A body that is not UTF-8 (Latin-1, UTF-16, ...): 415, naming the 1-based line and the 0-based byte offset. */
function notUtf8(line: number, offset: number, cut = false): AppFailure {
  const what = cut ? 'ends inside a character' : 'has a byte that is not UTF-8';
  return new AppFailure({
    kind: 'unsupported_format',
    detail: `the body is not valid UTF-8: it ${what} at line ${line}, byte offset ${offset}; send UTF-8`,
  });
}

/**
 * Decodes UTF-8 strictly: invalid bytes are a client error (415 with their line and byte offset), not replacement
 * characters. `maxBytes` bounds the bytes read, after any Content-Encoding was undone (see decodedBody).
 */
async function* utf8Chunks(body: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let total = 0;
  let lines = 1;
  // The last bytes of the previous chunk: a character may straddle two chunks.
  let tail = new Uint8Array(0);
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await reader.read();
      } catch (error) {
        if (error instanceof AppFailure) throw error;
        // The client's connection closed mid-upload: its request is incomplete, not a server fault.
        throw badBody('the upload ended before the body was complete');
      }
      const { done, value: chunk } = read;
      if (done) break;
      total += chunk.byteLength;
      if (total > maxBytes) {
        throw new AppFailure({ kind: 'too_large', detail: `the body is larger than ${maxBytes} bytes` });
      }
      let text: string;
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        // Rare: find the exact place. The tail's leading continuation bytes end a character already decoded.
        let skip = 0;
        while (skip < tail.length && (tail[skip]! & 0xc0) === 0x80) skip += 1;
        const joined = new Uint8Array(tail.length - skip + chunk.byteLength);
        joined.set(tail.subarray(skip));
        joined.set(chunk, tail.length - skip);
        const at = Math.max(0, firstInvalidUtf8(joined, false));
        const before = new TextDecoder('utf-8').decode(joined.subarray(0, at));
        throw notUtf8(lines + countNewlines(before), total - chunk.byteLength - (tail.length - skip) + at);
      }
      // JSON text starts with an ASCII character, so UTF-16 sent without a byte-order mark has a NUL in its first two
      // bytes (the detection of RFC 4627, section 3). A UTF-8 JSON or NDJSON body never does: a raw NUL is not JSON.
      // A NUL later on is left to the JSON reading (400, or a recorded item with invalid_items=record).
      const nul = total === chunk.byteLength ? chunk.subarray(0, 2).indexOf(0) : -1;
      if (nul >= 0) {
        throw new AppFailure({
          kind: 'unsupported_format',
          detail: `the body is not valid UTF-8: it has a NUL byte (UTF-16 without a byte-order mark?) at line 1, byte offset ${nul}; send UTF-8`,
        });
      }
      lines += countNewlines(text);
      tail = chunk.slice(Math.max(0, chunk.byteLength - 3));
      yield text;
    }
    finished = true;
  } finally {
    // Rejected early: stop reading the rest of the upload.
    if (!finished) await reader.cancel().catch(() => undefined);
  }
  try {
    yield decoder.decode();
  } catch {
    // The cut character's lead byte is the last byte of the tail that is not a continuation byte.
    let lead = tail.length - 1;
    while (lead > 0 && (tail[lead]! & 0xc0) === 0x80) lead -= 1;
    throw notUtf8(lines, total - tail.length + Math.max(0, lead), true);
  }
}

/** The Content-Encodings a request body may have; `identity` is the same as none. */
export const bodyEncodings = ['gzip', 'zstd'] as const;

/**
 * The body with its Content-Encoding undone, as a stream read on demand (so limits on the decoded bytes stop a
 * decompression bomb after the limit, not after it expanded in memory). A corrupt encoding is a 400 when read.
 * Returns an error detail for an encoding that is not supported.
 */
export function decodedBody(body: ReadableStream<Uint8Array>, contentEncoding: string | undefined): ReadableStream<Uint8Array> | { unsupported: string } {
  const codings = (contentEncoding ?? '').split(',').map((coding) => coding.trim().toLowerCase()).filter((coding) => coding !== '' && coding !== 'identity');
  if (codings.length === 0) return body;
  const [coding] = codings;
  if (codings.length > 1 || !(bodyEncodings as readonly string[]).includes(coding!)) {
    return { unsupported: `Content-Encoding ${JSON.stringify((contentEncoding ?? '').slice(0, 64))} is not supported; send gzip, zstd or no encoding` };
  }
  const decoder: ReadableWritablePair<Uint8Array, Uint8Array> =
    coding === 'gzip'
      ? (new DecompressionStream('gzip') as ReadableWritablePair<Uint8Array, Uint8Array>)
      : (Duplex.toWeb(createZstdDecompress()) as unknown as ReadableWritablePair<Uint8Array, Uint8Array>);
  const reader = body.pipeThrough(decoder).getReader();
  let decodedBytes = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else {
          decodedBytes += value.byteLength;
          controller.enqueue(value);
        }
      } catch (error) {
        const reason = `${decoderMessage(error)} (after ${decodedBytes} decoded bytes)`;
        controller.error(new AppFailure(validation(`the body is not valid ${coding}: ${reason}`, [{ path: '', message: `not valid ${coding}` }])));
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => undefined);
    },
  });
}

/**
 * What a decoder said went wrong ("incorrect header check", "unexpected end of file"). Node's gzip
 * `DecompressionStream` throws a `TypeError` with an empty message and zlib's own error as its `cause`.
 */
function decoderMessage(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1, current = current.cause) {
    const message = current.message.trim();
    if (message !== '') return message;
  }
  return 'the data could not be decoded';
}

export interface NdjsonReading {
  /**
   * `record` (batch option `invalid_items`): a line that is not JSON, or not I-JSON, is yielded as an
   * `UnreadableItem` in its place instead of refusing the body.
   */
  unreadable?: 'refuse' | 'record';
  /** Updated before each yield: the 1-based line of the item just yielded. */
  position?: { line: number };
}

/** What bounds an NDJSON body: its decoded bytes in all, and the bytes of one line. */
export interface NdjsonLimits {
  maxBytes: number;
  maxLineBytes: number;
}

/**
 * The longest line a valid memory can need: its content and its free-form JSON fields (metadata and six Papr fields,
 * each held to the metadata limit by domain/memory.ts) at their limits, every byte written as a six-character
 * `\uXXXX` escape, plus 64 KiB for the short fields. A longer line cannot hold a valid memory, so it is refused
 * before more of it is buffered.
 */
export function maxItemLineBytes(limits: MemoryLimits): number {
  return 6 * (limits.maxContentBytes + 8 * limits.maxMetadataBytes) + 64 * 1024;
}

/** One JSON value per line; blank lines are skipped. Line numbers in errors are 1-based. */
export async function* ndjsonItems(body: ReadableStream<Uint8Array>, limits: NdjsonLimits, reading: NdjsonReading = {}): AsyncGenerator<unknown> {
  let pending = '';
  let line = 0;
  let index = 0;
  const recordUnreadable = reading.unreadable === 'record';
  const parse = (text: string): unknown => {
    line += 1;
    if (text.trim() === '') return undefined;
    if (reading.position) reading.position.line = line;
    let parsed: ReturnType<typeof parseIJsonLine>;
    try {
      parsed = parseIJsonLine(text);
    } catch (error) {
      const detail = `line ${line} is not valid JSON: ${(error as Error).message}`;
      if (!recordUnreadable) throw badBody(detail, `line ${line}`);
      index += 1;
      return new UnreadableItem([{ path: '', message: `is not valid JSON: ${(error as Error).message}` }]);
    }
    if (parsed.violation) {
      const failure = notIJson(parsed.violation, ['memories', index], `line ${line}: `);
      if (!recordUnreadable) throw failure;
      index += 1;
      const issues = failure.error.kind === 'validation' ? failure.error.errors : [];
      return new UnreadableItem(issues.map((issue) => ({ ...issue, message: `${issue.message} (bodies must be I-JSON, RFC 7493)` })));
    }
    index += 1;
    return parsed.value;
  };
  // A line's UTF-16 length never exceeds its UTF-8 byte count, so this check never refuses a line within the limit.
  const tooLong = () =>
    new AppFailure({
      kind: 'too_large',
      detail: `line ${line + 1} is longer than ${limits.maxLineBytes} bytes, more than any valid memory needs`,
    });
  for await (const text of utf8Chunks(body, limits.maxBytes)) {
    pending += text;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      if (newline > limits.maxLineBytes) throw tooLong();
      const value = parse(pending.slice(0, newline).replace(/\r$/, ''));
      if (value !== undefined) yield value;
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
    if (pending.length > limits.maxLineBytes) throw tooLong();
  }
  const last = parse(pending);
  if (last !== undefined) yield last;
}

/** The fields of a JSON submit body other than `memories`, as sent (checked by the caller). */
export type JsonEnvelope = Record<string, unknown>;

/** batchmem's own fields, then those Papr clients send (see docs/api.md, "Papr clients"). */
const envelopeFields = new Set([
  'memories', 'batch_id', 'webhook_url', 'webhook_secret',
  'batch_size', 'external_user_id', 'user_id', 'namespace_id', 'organization_id', 'graph_generation', 'link_to',
  'memory_policy', 'policy',
  'completion_window', 'metadata', 'on_existing', 'max_failed_items', 'max_failed_percent', 'invalid_items',
]);

/**
 * Items of `{memories: [...], batch_id?, webhook_url?, webhook_secret?}` as they stream in. The other fields may
 * come before or after the memories; `envelope` holds them once the body has been read to its end.
 */
export function jsonBatch(body: ReadableStream<Uint8Array>, maxBytes: number) {
  const envelope: JsonEnvelope = {};
  const seenFields = new Set<string>();
  let sawMemories = false;
  let failure: AppFailure | undefined;
  const ready: unknown[] = [];
  const parser = new IJsonParser({ paths: ['$.*', '$.memories.*'], keepStack: false });
  let started = false;
  parser.onValue = ({ value, key, stack }) => {
    if (failure) return;
    if (stack.length === 2) {
      // Under $.memories: only an array's elements are items.
      if (typeof key !== 'number') failure = badBody('memories must be an array', 'memories');
      else ready.push(value);
      return;
    }
    if (typeof key !== 'string') {
      failure = badBody('the body must be a JSON object with a memories array');
    } else if (!envelopeFields.has(key)) {
      failure = badBody(`unknown field ${JSON.stringify(key.slice(0, 64))}`, key.slice(0, 64));
    } else if (seenFields.has(key)) {
      // A repeated field is ambiguous (a second memories array would otherwise be appended to the first).
      failure = badBody(`field ${key} appears more than once`, key);
    } else if (key === 'memories') {
      seenFields.add(key);
      if (!Array.isArray(value)) failure = badBody('memories must be an array', 'memories');
      sawMemories = true;
    } else {
      seenFields.add(key);
      envelope[key] = value;
    }
  };
  async function* items(): AsyncGenerator<unknown> {
    for await (const text of utf8Chunks(body, maxBytes)) {
      if (!started && text.trim() !== '') {
        started = true;
        if (!text.trimStart().startsWith('{')) throw badBody('the body must be a JSON object with a memories array');
      }
      try {
        parser.write(text);
      } catch (error) {
        if (parser.violation) throw notIJson(parser.violation, []);
        throw badBody(`the body is not valid JSON: ${(error as Error).message}`);
      }
      if (parser.violation) throw notIJson(parser.violation, []);
      if (failure) throw failure;
      while (ready.length > 0) yield ready.shift();
    }
    if (!started) throw badBody('the body is empty');
    if (!parser.isEnded) {
      try {
        parser.end();
      } catch (error) {
        throw badBody(`the body is not valid JSON: ${(error as Error).message}`);
      }
    }
    if (parser.violation) throw notIJson(parser.violation, []);
    if (failure) throw failure;
    while (ready.length > 0) yield ready.shift();
    if (!sawMemories) throw badBody('memories is required', 'memories');
  }
  return { items: items(), envelope };
}
