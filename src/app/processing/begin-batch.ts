// Moves a pending batch to processing and tells the runner what there is to do.
import type { Tenant } from '../../domain/batch.ts';
import { begin, type BatchStatus, schedulesSegments, uploadOpen } from '../../domain/lifecycle.ts';
import type { FailureLimits } from '../../domain/failure-limits.ts';
import type { Counts } from '../../domain/progress.ts';
import type { Services } from '../services.ts';
import { changeBatch } from '../change-batch.ts';

export interface BatchPlan {
  status: BatchStatus;
  /** Whose batch it is: the embedded runner shares its segment slots fairly between organizations. */
  tenant: Tenant;
  segments: number;
  /** The upload is still streaming (`invalid_items: "record"`): more segments may come (see await-segments.ts). */
  uploadOpen: boolean;
  /** Segments whose outcome is already recorded (a resumed run skips them). */
  doneSegments: number[];
  /** The stored counters when the plan was made. */
  counts: Counts;
  /** The batch's deadline (ISO 8601), or null: a runner races its processing against a timer set for it. */
  expiresAt: string | null;
  /** Tolerated failures: past them the runner starts no new segment and finishes the batch failed. */
  failureLimits: FailureLimits | null;
}

export async function beginBatch(services: Services, key: string): Promise<BatchPlan | undefined> {
  // Only a pending batch begins; any other status (already begun, cancelling, final) is taken as it stands.
  let began = false;
  const batch = await changeBatch(services.batches, key, (current) => {
    const step = begin(current, services.clock.now().toISOString());
    began = step.ok;
    return step.ok ? step.value : undefined;
  });
  if (!batch) return undefined;
  if (began) services.observer?.batchStarted(batch.status);
  const done = schedulesSegments(batch.status) ? (await services.batches.listSegments(key)).map((s) => s.segment) : [];
  return { status: batch.status, tenant: batch.tenant, segments: batch.payload.segments, uploadOpen: uploadOpen(batch), doneSegments: done, counts: batch.counts, expiresAt: batch.expiresAt ?? null, failureLimits: batch.failureLimits ?? null };
}
