// What a batch does with an item that fails validation (batch option `invalid_items`), and how a recorded invalid
// item travels from the upload to its per-item failure: as a marker line in its segment, in its place, so that its
// index stays its position in the body and the segment's processor reports it like a failed write.
import type { FieldIssue } from './errors.ts';

/**
 * `reject` (default): one invalid item refuses the whole batch (400, nothing stored), and processing starts once the
 * last byte is stored. `record`: an invalid item becomes a per-item failure and the others go on; processing starts
 * with the first stored segment while the upload still streams.
 */
export const invalidItemsModes = ['reject', 'record'] as const;
export type InvalidItems = (typeof invalidItemsModes)[number];
export const defaultInvalidItems: InvalidItems = 'reject';

/** Processing starts before the upload ends only for a batch in this mode. */
export function streamsProcessing(mode: InvalidItems | null | undefined): boolean {
  return mode === 'record';
}

/**
 * The upload as the batch record knows it: `received` items stored in segments so far, `complete` once the last one
 * is. A record without it (every `reject` batch) was complete when it was created.
 */
export interface UploadState {
  complete: boolean;
  received: number;
  /** When the last segment was stored (ISO 8601): a runner waiting for more tells a live upload from a dead one. */
  storedAt?: string | undefined;
  /**
   * The request's fingerprint (domain/idempotency.ts), recorded when the upload ends: a streamed batch is recorded
   * before its body is all read, so this is where a repeat under the same Idempotency-Key is compared with it.
   */
  bodySha256?: string | undefined;
}

/**
 * The key of the marker object stored in place of an invalid item. `$` cannot start a memory item's field (the item
 * schema is strict), so no valid item is ever read as a marker.
 */
const markerKey = '$invalid';

/** What is kept of an invalid item: its external id when one could be read, and the problems with their paths. */
export interface InvalidItem {
  externalId: string | null;
  /** One line: where it was in the body (`line 17` for NDJSON, `memories.16` for JSON) and each `path message`. */
  error: string;
}

/** The problems of an invalid item in one line, as its per-item failure says them. */
export function describeInvalidItem(where: string, issues: readonly FieldIssue[]): string {
  const problems = issues.map((issue) => (issue.path ? `${issue.path} ${issue.message}` : issue.message));
  return `${where} is invalid: ${problems.join('; ')}`;
}

/**
 * True when a per-item failure's text is a recorded invalid item's (`describeInvalidItem`): the client's mistake, not
 * a failed write, so Papr's `errors[].code` says 400 for it.
 */
export function isInvalidItemError(error: string): boolean {
  return /^(line \d+|memories\.\d+) is invalid: /.test(error);
}

/** The external id of a raw item when it has a readable one (a string of 1 to 256 characters), else null. */
export function readableExternalId(raw: unknown): string | null {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return null;
  const value = (raw as Record<string, unknown>).external_id;
  return typeof value === 'string' && value.length > 0 && value.length <= 256 ? value : null;
}

/** The segment line standing for an invalid item. */
export function invalidItemLine(item: InvalidItem): string {
  return JSON.stringify({ [markerKey]: { external_id: item.externalId, error: item.error } });
}

/** The invalid item a segment line stands for, or undefined when the line holds a memory item. */
export function asInvalidItem(value: unknown): InvalidItem | undefined {
  if (value === null || typeof value !== 'object' || !(markerKey in value)) return undefined;
  const marker = (value as Record<string, { external_id?: unknown; error?: unknown }>)[markerKey];
  return {
    externalId: typeof marker?.external_id === 'string' ? marker.external_id : null,
    error: typeof marker?.error === 'string' ? marker.error : 'invalid item',
  };
}

/**
 * An item the body reader could not read as JSON (an NDJSON line that does not parse, or breaks I-JSON). With
 * `invalid_items: "record"` the reader yields it in the item's place instead of refusing the body.
 */
export class UnreadableItem {
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    this.issues = issues;
  }
}
