// The two wire formats the HTTP sink speaks: Papr's add-memory API, and signed NDJSON for a plain receiver.
import { createHash } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { MemoryRecord } from '../../domain/memory.ts';

export type SinkFormat = 'papr' | 'ndjson';

/**
 * One request's key: derived only from the memory ids it carries, so every retry of the same chunk sends the same
 * key and a receiver that dedupes by key sees one logical event per memory.
 */
export function idempotencyKey(memoryIds: string[]): string {
  return 'bm-' + createHash('sha256').update(memoryIds.join('\n')).digest('hex').slice(0, 40);
}

/**
 * One request as built once for a chunk: every attempt sends these path, body bytes and headers unchanged; a signed
 * request adds its timestamp and signature per attempt (`WireFormat.headersAt`).
 */
export interface WireRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * A memory as Papr's single add takes it. batchmem's own ids ride in `metadata` (Papr has no field for a caller's id):
 * `batchmem_memory_id` is the id a receiver can dedupe on; `external_id` is kept as batchmem's top-level field. The
 * Papr fields go along, except `organization_id` and `namespace_id`: they name this side's tenant, and on the target
 * the tenant is the one of `BATCHMEM_SINK_API_KEY` (a target checks them against it and would refuse the memory).
 */
export function paprMemory(record: MemoryRecord): Record<string, unknown> {
  const { organization_id: _organization, namespace_id: _namespace, ...attributes } = record.attributes ?? {};
  return {
    ...attributes,
    content: record.content,
    ...(record.type !== null ? { type: record.type } : {}),
    metadata: { ...(record.metadata ?? {}), batchmem_memory_id: record.memoryId },
    ...(record.externalId !== null ? { external_id: record.externalId } : {}),
  };
}

/** One NDJSON line: everything a receiver needs to store the memory and dedupe it by `memory_id`. */
export function ndjsonLine(record: MemoryRecord): string {
  return JSON.stringify({
    memory_id: record.memoryId,
    batch: record.batchKey,
    index: record.index,
    content: record.content,
    type: record.type,
    metadata: record.metadata,
    external_id: record.externalId,
    ...(record.attributes ?? {}),
    tenant: record.tenant,
  });
}

export interface FormatOptions {
  format: SinkFormat;
  apiKey?: string | undefined;
  /** Standard Webhooks secret (`whsec_` + base64) for NDJSON signatures. */
  secret?: string | undefined;
}

export class WireFormat {
  readonly #options: FormatOptions;
  readonly #signer: Webhook | undefined;

  constructor(options: FormatOptions) {
    this.#options = options;
    this.#signer = options.format === 'ndjson' && options.secret ? new Webhook(options.secret) : undefined;
  }

  /**
   * The request for a chunk, built (serialized) once and sent as is on every attempt. Papr: a single memory goes to
   * `/v1/memory`, more to `/v1/memory/batch`. NDJSON: one line per memory, with the idempotency key as the Standard
   * Webhooks `webhook-id`; its timestamp and signature are not here but made per attempt by `headersAt`.
   */
  build(chunk: MemoryRecord[], useBatch: boolean): WireRequest {
    // The value is part of the key: an updated memory (same id, new value) is a new event for the target.
    const key = idempotencyKey(chunk.map((r) => `${r.memoryId}#${r.fingerprint}`));
    const headers: Record<string, string> = { 'idempotency-key': key };
    if (this.#options.format === 'papr') {
      if (this.#options.apiKey) headers['x-api-key'] = this.#options.apiKey;
      headers['content-type'] = 'application/json';
      if (chunk.length === 1 && !useBatch) return { path: '/v1/memory', headers, body: JSON.stringify(paprMemory(chunk[0]!)) };
      return { path: '/v1/memory/batch', headers, body: JSON.stringify({ memories: chunk.map(paprMemory) }) };
    }
    const body = chunk.map(ndjsonLine).join('\n') + '\n';
    headers['content-type'] = 'application/x-ndjson';
    if (this.#signer) headers['webhook-id'] = key;
    return { path: '', headers, body };
  }

  /**
   * The headers of one attempt of `wire` sent at `now`: the built headers, and for a signed NDJSON request a
   * `webhook-timestamp` of `now` (whole seconds) with a `webhook-signature` over it, the id and the unchanged body.
   * Made per attempt because a Standard Webhooks receiver refuses a timestamp more than its tolerance (5 minutes in
   * the `standardwebhooks` verify) from its own clock: a retry after a longer pause (Retry-After, the breaker, an
   * outage) carrying the first attempt's timestamp would be refused as stale, and a 4xx is a permanent refusal.
   */
  headersAt(wire: WireRequest, now: Date): Record<string, string> {
    const id = wire.headers['webhook-id'];
    if (!this.#signer || id === undefined) return wire.headers;
    return {
      ...wire.headers,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': this.#signer.sign(id, now, wire.body),
    };
  }
}

/** Per memory of a chunk, what a 2xx (or 409) answer says: the target's id, or a per-item refusal. */
export type ItemAnswer = { ok: true; sinkId: string | null } | { ok: false; status: number; message: string };

const asString = (value: unknown): string | null => (typeof value === 'string' && value.length > 0 ? value : null);

function paprSingleId(body: unknown): string | null {
  const answer = body as { data?: { memoryId?: unknown; objectId?: unknown }[]; memory_id?: unknown; id?: unknown } | null;
  const first = Array.isArray(answer?.data) ? answer.data[0] : undefined;
  return asString(first?.memoryId) ?? asString(first?.objectId) ?? asString(answer?.memory_id) ?? asString(answer?.id);
}

/**
 * Reads a successful answer for a chunk. Understood shapes: Papr's single add (`data[0].memoryId`), Papr's batch
 * (`errors: [{index, error, code}]` for refused items), and for NDJSON a JSON or NDJSON body listing
 * `{memory_id, id}` (or `sink_id`). Anything else is success without a target id: the 2xx is what counts.
 */
export function readAnswer(format: SinkFormat, chunk: MemoryRecord[], text: string, path: string): ItemAnswer[] {
  const parsed = parseBody(text);
  const answers: ItemAnswer[] = chunk.map(() => ({ ok: true, sinkId: null }));
  if (format === 'papr' && path === '/v1/memory') {
    answers[0] = { ok: true, sinkId: paprSingleId(parsed[0]) };
    return answers;
  }
  const byId = new Map(chunk.map((r, position) => [r.memoryId, position]));
  for (const entry of parsed) {
    const body = entry as { errors?: unknown; results?: unknown; successful?: unknown } | null;
    if (Array.isArray(body?.errors)) {
      for (const item of body.errors as { index?: unknown; error?: unknown; code?: unknown; status?: unknown }[]) {
        const position = typeof item.index === 'number' ? item.index : -1;
        if (position < 0 || position >= chunk.length) continue;
        const status = typeof item.code === 'number' ? item.code : typeof item.status === 'number' ? item.status : 400;
        answers[position] = { ok: false, status, message: asString(item.error) ?? 'refused by the target' };
      }
    }
    const listed = Array.isArray(body?.results) ? (body.results as unknown[]) : body && !Array.isArray(body) ? [body] : [];
    for (const item of listed as { memory_id?: unknown; id?: unknown; sink_id?: unknown }[]) {
      const position = typeof item?.memory_id === 'string' ? byId.get(item.memory_id) : undefined;
      if (position === undefined || !answers[position]!.ok) continue;
      answers[position] = { ok: true, sinkId: asString(item.sink_id) ?? asString(item.id) };
    }
  }
  return answers;
}

function parseBody(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  try {
    return [JSON.parse(trimmed)];
  } catch {
    const lines: unknown[] = [];
    for (const line of trimmed.split('\n')) {
      try {
        lines.push(JSON.parse(line));
      } catch {
        // A body that is not JSON says nothing per item.
      }
    }
    return lines;
  }
}

/** The target's message from a refusal body: RFC 9457 `detail`/`title`, Papr's `error`/`message`, or the text. */
export function refusalMessage(text: string): string {
  const [body] = parseBody(text) as ({ detail?: unknown; title?: unknown; error?: unknown; message?: unknown } | null)[];
  const message = asString(body?.detail) ?? asString(body?.error) ?? asString(body?.message) ?? asString(body?.title) ?? text.trim();
  return message.slice(0, 500) || 'no message';
}
