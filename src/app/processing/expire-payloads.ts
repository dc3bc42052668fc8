// Payload retention: once a batch is final and BATCHMEM_PAYLOAD_RETENTION has passed since it completed, its
// segments are deleted from the payload store. The batch record keeps its counts, results and errors.
import type { Services } from '../services.ts';
import { scheduleSweeps, type SweepSchedule } from './sweep-schedule.ts';

export interface ExpirySweep {
  batches: number;
  objects: number;
  /** Batches whose deletion failed this time; they stay listed and the next sweep tries again. */
  failures: Array<{ key: string; error: unknown }>;
}

const pageSize = 100;

/** Deletes the segments of every batch past its retention. Safe to run from several processes at once. */
export async function expirePayloads(services: Services, retentionMs: number): Promise<ExpirySweep> {
  const { batches } = services;
  const cutoff = new Date(services.clock.now().getTime() - retentionMs).toISOString();
  const sweep: ExpirySweep = { batches: 0, objects: 0, failures: [] };
  const failed = new Set<string>();
  for (;;) {
    const due = (await batches.listExpiredPayloads(cutoff, pageSize + failed.size)).filter((e) => !failed.has(e.key));
    for (const expired of due) {
      try {
        // Delete first, mark second: a crash in between only repeats a delete, never leaves segments behind.
        sweep.objects += await services.payloads.deletePrefix(expired.prefix);
        await batches.markPayloadExpired(expired.key, services.clock.now().toISOString());
        sweep.batches += 1;
      } catch (error) {
        failed.add(expired.key);
        sweep.failures.push({ key: expired.key, error });
      }
    }
    if (due.length < pageSize) return sweep;
  }
}

export interface ExpiryScheduleOptions {
  retentionMs: number;
  /** Time between sweeps; a batch's segments go at most this long after its retention passes. */
  intervalMs: number;
  onSweep?: (sweep: ExpirySweep) => void;
  onError?: (error: unknown) => void;
}

/** Sweeps now and then every `intervalMs` until stopped; `stop` waits for a running sweep to end. */
export function scheduleExpiry(services: Services, options: ExpiryScheduleOptions): SweepSchedule {
  return scheduleSweeps(() => expirePayloads(services, options.retentionMs), options);
}

/** A tenth of the retention, between one second and ten minutes: prompt for short retentions, cheap for long ones. */
export function expiryIntervalMs(retentionMs: number): number {
  return Math.min(10 * 60_000, Math.max(1_000, Math.round(retentionMs / 10)));
}
