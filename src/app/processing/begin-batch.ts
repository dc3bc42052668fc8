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
  /** 0 for the first run, else the redrive this run does (`Batch.redrives`). */
  redrive: number;
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
  const redrive = batch.redrives ?? 0;
  const done = schedulesSegments(batch.status) ? await doneSegments(services, key, redrive) : [];
  return {
    status: batch.status,
    tenant: batch.tenant,
    segments: batch.payload.segments,
    uploadOpen: uploadOpen(batch),
    doneSegments: done,
    counts: batch.counts,
    // A redrive runs after the first run ended: the completion window and the failure limits were the first run's.
    expiresAt: redrive > 0 ? null : (batch.expiresAt ?? null),
    failureLimits: redrive > 0 ? null : (batch.failureLimits ?? null),
    redrive,
  };
}

/**
 * Segments with nothing left to do. In the first run: those with a recorded outcome. In a redrive: those whose first
 * outcome had no failed item, and those this redrive has recorded; a segment the first run never reached is to do.
 */
async function doneSegments(services: Services, key: string, redrive: number): Promise<number[]> {
  const recorded = await services.batches.listSegments(key);
  if (redrive === 0) return recorded.map((s) => s.segment);
  const redriven = new Set(await services.batches.listRedriveSegments(key, redrive));
  return recorded.filter((s) => s.failed === 0 || redriven.has(s.segment)).map((s) => s.segment);
}
