// The batch record and its identity. Its lifecycle (statuses and the legal changes between them) is lifecycle.ts.
import { createHash } from 'node:crypto';
import type { Codec } from './codec.ts';
import type { BatchStatus } from './lifecycle.ts';
import type { MemoryAttributes } from './memory.ts';
import type { Counts } from './progress.ts';

export { batchStatuses, type BatchStatus, canTransition, isFinal, transition } from './lifecycle.ts';

/** Who a batch belongs to. The organization is the isolation boundary. */
export interface Tenant {
  organization: string;
  namespace: string;
  user: string;
  workspace: string;
}

export interface PayloadInfo {
  codec: Codec;
  /** Where the segments live in the payload store; segment names are appended by `segmentKey`. */
  prefix: string;
  segments: number;
  rawBytes: number;
  storedBytes: number;
}

export interface WebhookState {
  url: string | null;
  secret: string | null;
  delivered: boolean;
  attempts: number;
  lastError: string | null;
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
  payload: PayloadInfo;
  workflowId: string | null;
  webhook: WebhookState;
  /** Why the batch failed, when it did. */
  error: string | null;
  /** Batch-level values of the Papr memory fields, merged under each memory's own when it is stored. */
  memoryDefaults?: MemoryAttributes | null | undefined;
  /** SHA-256 (hex) of the normalised submit body: tells a retried request from a different one under the same key. */
  fingerprint?: string | null | undefined;
}

export const batchIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

export function batchKey(organization: string, id: string): string {
  return createHash('sha256').update(organization).update('\0').update(id).digest('hex').slice(0, 32);
}

export function workflowIdFor(key: string): string {
  return `batch-${key}`;
}

export function compressionRatio(payload: PayloadInfo): number {
  return payload.storedBytes === 0 ? 0 : Math.round((payload.rawBytes / payload.storedBytes) * 100) / 100;
}
