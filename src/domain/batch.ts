// The batch record and its identity. Its lifecycle (statuses and the legal changes between them) is lifecycle.ts.
import { createHash } from 'node:crypto';
import type { PayloadInfo } from './codec.ts';
import type { FailureLimits } from './failure-limits.ts';
import type { InvalidItems, UploadState } from './invalid-items.ts';
import type { BatchStatus } from './lifecycle.ts';
import type { MemoryAttributes, OnExisting } from './memory.ts';
import type { Counts, WriteCounts } from './progress.ts';
import type { Tenant } from './tenant.ts';

export type { Tenant } from './tenant.ts';
export type { PayloadInfo } from './codec.ts';
export { batchStatuses, type BatchStatus, canTransition, isFinal, transition } from './lifecycle.ts';


export interface WebhookState {
  url: string | null;
  secret: string | null;
  delivered: boolean;
  attempts: number;
  lastError: string | null;
  /**
   * Set when the retry loop stopped without delivering (out of attempts, or the receiver refused for good); cleared
   * when a redelivery starts a new loop. Absent on records written before it existed.
   */
  gaveUp?: boolean | undefined;
}

/**
 * Whether a delivery of the batch's webhook event is still going on: a final batch whose event is not delivered and
 * whose retry loop has not given up (`maxAttempts`: the webhook retry policy's, so records that predate `gaveUp`
 * count as ended once out of attempts). A redelivery then would run a second loop beside it (docs/api.md, redeliver).
 */
export function webhookDeliveryInProgress(webhook: WebhookState, maxAttempts: number): boolean {
  return webhook.url !== null && !webhook.delivered && webhook.gaveUp !== true && webhook.attempts < maxAttempts;
}

export interface Batch {
  /** Global identity: derived from organization and id, so two tenants may use the same id. */
  key: string;
  /** The id the client sees and uses in URLs, unique within its organization. */
  id: string;
  requestId: string;
  tenant: Tenant;
  status: BatchStatus;
  /** Incremented on every status/field update; updates compare-and-set on it. */
  version: number;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  counts: Counts;
  /**
   * How `counts.succeeded` splits by write outcome, kept by the ledger with the counts (`recordSegment` moves both in
   * one step, so they always add up). Null for a batch whose ledger began before it kept write outcomes (an earlier
   * version's data): its outcomes are then only in the memory sink (`MemorySink.countOutcomes`).
   */
  written: WriteCounts | null;
  payload: PayloadInfo;
  workflowId: string | null;
  webhook: WebhookState;
  /** Why the batch failed or expired, when it did. */
  error: string | null;
  /** Batch-level values of the Papr memory fields, merged under each memory's own when it is stored. */
  memoryDefaults?: MemoryAttributes | null | undefined;
  /** SHA-256 (hex) of the normalised submit body: tells a retried request from a different one under the same key. */
  fingerprint?: string | null | undefined;
  /** The completion window as the client gave it (`"24h"`), or null (or absent) for none. */
  completionWindow?: string | null | undefined;
  /** When the batch expires if it is not final by then (ISO 8601): `createdAt` plus the window. */
  expiresAt?: string | null | undefined;
  /** The client's own labels: at most `batchMetadataLimits.maxPairs` string pairs, stored and returned as sent. */
  metadata?: Record<string, string> | undefined;
  /** What to do with a memory whose external id the tenant stored already; absent means `update`. */
  onExisting?: OnExisting | null | undefined;
  /** Tolerated failures (`max_failed_items`, `max_failed_percent`) as sent; absent or null means no limit. */
  failureLimits?: FailureLimits | null | undefined;
  /** What an invalid item does to the batch (`invalid_items`); absent means `reject`. */
  invalidItems?: InvalidItems | null | undefined;
  /** Present while (and after) an upload that processing overlaps: whether it ended, and the items stored so far. */
  upload?: UploadState | null | undefined;
  /** Redrives (`POST /v1/batch/{id}/retry`) this batch has had; absent means none. */
  redrives?: number | undefined;
}

/**
 * Bounds of a batch's metadata. Keys are restricted to characters every batch store can filter on as a field path
 * (no dots, quotes or brackets); the values are free text.
 */
export const batchMetadataLimits = { maxPairs: 16, maxKeyLength: 64, maxValueLength: 512 } as const;
export const metadataKeyPattern = /^[A-Za-z0-9_-]{1,64}$/;

/** The problems with a batch metadata value, each with its path; empty when it is acceptable. */
export function batchMetadataIssues(value: unknown): { path: string; message: string }[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return [{ path: 'metadata', message: 'must be an object of string values' }];
  }
  const entries = Object.entries(value);
  if (entries.length > batchMetadataLimits.maxPairs) {
    return [{ path: 'metadata', message: `may hold at most ${batchMetadataLimits.maxPairs} pairs, not ${entries.length}` }];
  }
  const issues: { path: string; message: string }[] = [];
  for (const [key, item] of entries) {
    const path = `metadata.${key.slice(0, batchMetadataLimits.maxKeyLength)}`;
    if (!metadataKeyPattern.test(key)) issues.push({ path, message: 'key must match [A-Za-z0-9_-]{1,64}' });
    else if (typeof item !== 'string') issues.push({ path, message: 'must be a string' });
    else if (item.length > batchMetadataLimits.maxValueLength) {
      issues.push({ path, message: `must be at most ${batchMetadataLimits.maxValueLength} characters` });
    }
  }
  return issues;
}

/** Bounds of a completion window: long enough to mean something, short enough that a forgotten batch still ends. */
export const completionWindowLimits = { minMs: 5_000, maxMs: 7 * 86_400_000 } as const;
const windowUnitsMs = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `"24h"` -> milliseconds: a whole number and a unit (s, m, h, d), between 5 s and 7 d; else the reason it is not. */
export function parseCompletionWindow(value: unknown): { ok: true; ms: number } | { ok: false; message: string } {
  const match = typeof value === 'string' ? /^([1-9][0-9]{0,6})(s|m|h|d)$/.exec(value) : null;
  if (!match) return { ok: false, message: 'must be a whole number and a unit s, m, h or d, for example "24h"' };
  const ms = Number(match[1]) * windowUnitsMs[match[2] as keyof typeof windowUnitsMs];
  if (ms < completionWindowLimits.minMs || ms > completionWindowLimits.maxMs) return { ok: false, message: 'must be between 5s and 7d' };
  return { ok: true, ms };
}

/** The batch-id rule, spelled once: what a client may name a batch (and so what may appear in its URLs). */
export const batchIdPattern = /^[A-Za-z0-9_-]{1,64}$/;
/** The rule in words, for validation messages. */
export const batchIdRule = `must match ${batchIdPattern.source.slice(1, -1)}`;

export function batchKey(organization: string, id: string): string {
  return createHash('sha256').update(organization).update('\0').update(id).digest('hex').slice(0, 32);
}

/** The orchestrator's id of a batch's run: one per batch, and a new one for each redrive (a run is never reopened). */
export function workflowIdFor(key: string, redrive = 0): string {
  return redrive > 0 ? `batch-${key}-redrive-${redrive}` : `batch-${key}`;
}

export function compressionRatio(payload: PayloadInfo): number {
  return payload.storedBytes === 0 ? 0 : Math.round((payload.rawBytes / payload.storedBytes) * 100) / 100;
}
