// Telling a retried submit from a new one. Clients retry a submit whose answer they did not get (a timeout, a 5xx),
// often without an Idempotency-Key; the fingerprint of the body lets the server answer the retry with the first
// batch. Used by every route that creates batches, so the rule lives here once.
import { createHash, type Hash } from 'node:crypto';
import type { Tenant } from './batch.ts';

/**
 * JSON with object keys sorted and null or undefined members left out, so two bodies that mean the same thing
 * (fields in another order, an optional field sent as null) serialise the same.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const members = Object.keys(value)
    .filter((key) => (value as Record<string, unknown>)[key] !== null && (value as Record<string, unknown>)[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
  return `{${members.join(',')}}`;
}

/**
 * SHA-256 over a submit body as it streams: each validated memory (in order), then the batch-level options.
 * Memories are fed as the validator re-serialised them (its fields in one order, nulls removed), so the cost is one
 * hash update per memory, not a second serialisation.
 */
export class BodyFingerprint {
  readonly #hash: Hash = createHash('sha256');

  addMemory(normalisedJson: string): void {
    this.#hash.update(normalisedJson).update('\n');
  }

  /**
   * The same as `addMemory` for each line of a segment's NDJSON (every line ends with a newline): one hash update
   * per segment over bytes already encoded, instead of one per memory over a string.
   */
  addLines(ndjson: Uint8Array): void {
    this.#hash.update(ndjson);
  }

  /** The hex digest; `options` are the batch-level fields (canonicalised here). Call once. */
  finish(options: Record<string, unknown>): string {
    return this.#hash.update('\0').update(canonicalJson(options)).digest('hex');
  }
}

/**
 * The batch ids a key-less submit with this fingerprint would have, for the current window bucket and the one
 * before. Deriving the id from tenant and fingerprint makes two identical submits racing each other collide on one
 * record (the repository's create is idempotent by id). Buckets are `windowMs` wide, so a retry just after a bucket
 * boundary still finds the first batch under `previous`; whether that one is young enough is `withinWindow`.
 */
export function dedupeBatchIds(tenant: Tenant, fingerprint: string, nowMs: number, windowMs: number): { current: string; previous: string } {
  const bucket = Math.floor(nowMs / windowMs);
  const id = (at: number) =>
    'b_' +
    createHash('sha256')
      .update([tenant.organization, tenant.namespace, tenant.user, tenant.workspace, fingerprint, String(at)].join('\0'))
      .digest('hex')
      .slice(0, 32);
  return { current: id(bucket), previous: id(bucket - 1) };
}

export function withinWindow(createdAt: string, nowMs: number, windowMs: number): boolean {
  return nowMs - Date.parse(createdAt) < windowMs;
}
