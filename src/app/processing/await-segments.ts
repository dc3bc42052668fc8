// While a batch's upload is still open (`invalid_items: "record"`), a runner that has scheduled every stored segment
// waits here for the next ones. The batch record is the only channel: the upload stores a segment, then moves the
// record's segment count under compare-and-set; the runner reads it. Workflow inputs stay the batch key.
import { schedulesSegments, uploadOpen } from '../../domain/lifecycle.ts';
import type { Services } from '../services.ts';

/** How often the record is read while waiting: short next to a segment's processing time, cheap for the store. */
export const uploadPollMs = 50;

export interface SegmentsKnown {
  /** Segments stored so far. */
  segments: number;
  /** More may come: the upload has not ended. */
  uploadOpen: boolean;
  /** False once the batch no longer schedules segments (cancelled, final, or gone). */
  schedules: boolean;
}

/**
 * Resolves when the batch has more than `known` segments, its upload ended, it stopped scheduling segments, or
 * `maxWaitMs` passed (whichever first); `stopped` cuts the wait short too.
 */
export async function awaitSegments(
  services: Pick<Services, 'batches'>,
  key: string,
  known: number,
  wait: { maxWaitMs: number; stopped?: () => boolean; sleep?: (ms: number) => Promise<void> },
): Promise<SegmentsKnown> {
  const sleep = wait.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const until = Date.now() + wait.maxWaitMs;
  for (;;) {
    const batch = await services.batches.get(key);
    if (!batch) return { segments: known, uploadOpen: false, schedules: false };
    const seen = { segments: batch.payload.segments, uploadOpen: uploadOpen(batch), schedules: schedulesSegments(batch.status) };
    if (seen.segments > known || !seen.uploadOpen || !seen.schedules || wait.stopped?.() || Date.now() >= until) return seen;
    await sleep(Math.min(uploadPollMs, Math.max(1, until - Date.now())));
  }
}
