// Streaming readers for the two submit formats. Neither holds the whole body: items are yielded as they arrive,
// so memory stays flat whatever the batch size. Malformed input throws AppFailure with the line or position.
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

/** Decodes UTF-8 strictly: invalid bytes are a client error, not replacement characters. */
async function* utf8Chunks(body: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let total = 0;
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await reader.read();
      } catch {
        // The client's connection closed mid-upload: its request is incomplete, not a server fault.
        throw badBody('the upload ended before the body was complete');
      }
      const { done, value: chunk } = read;
      if (done) break;
      total += chunk.byteLength;
      if (total > maxBytes) {
        throw new AppFailure({ kind: 'payload_too_large', detail: `the body is larger than ${maxBytes} bytes` });
      }
      try {
        yield decoder.decode(chunk, { stream: true });
      } catch {
        throw badBody('the body is not valid UTF-8');
      }
    }
    finished = true;
  } finally {
    // Rejected early: stop reading the rest of the upload.
    if (!finished) await reader.cancel().catch(() => undefined);
  }
  try {
    yield decoder.decode();
  } catch {
    throw badBody('the body is not valid UTF-8 (it ends inside a character)');
  }
}

/** One JSON value per line; blank lines are skipped. Line numbers in errors are 1-based. */
export async function* ndjsonItems(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  let pending = '';
  let line = 0;
  let index = 0;
  const parse = (text: string): unknown => {
    line += 1;
    if (text.trim() === '') return undefined;
    let parsed: ReturnType<typeof parseIJsonLine>;
    try {
      parsed = parseIJsonLine(text);
    } catch (error) {
      throw badBody(`line ${line} is not valid JSON: ${(error as Error).message}`, `line ${line}`);
    }
    if (parsed.violation) throw notIJson(parsed.violation, ['memories', index], `line ${line}: `);
    index += 1;
    return parsed.value;
  };
  for await (const text of utf8Chunks(body, Number.MAX_SAFE_INTEGER)) {
    pending += text;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const value = parse(pending.slice(0, newline).replace(/\r$/, ''));
      if (value !== undefined) yield value;
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
    if (pending.length > 64 * 1024 * 1024) throw badBody(`line ${line + 1} is longer than 64 MiB`);
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
  'completion_window', 'metadata',
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
