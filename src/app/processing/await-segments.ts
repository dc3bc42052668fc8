// While a batch's upload is still open (`invalid_items: "record"`), a runner that has scheduled every stored segment
// waits here for the next ones. The batch record is the only channel: the upload stores a segment, then moves the
// record's segment count under compare-and-set; the runner reads it. Workflow inputs stay the batch key.
import { abandonUpload, schedulesSegments, storedSoFar, uploadOpen, uploadStalled, uploadStallMs } from '../../domain/lifecycle.ts';
import { changeBatch } from '../change-batch.ts';
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
 * `maxWaitMs` passed (whichever first); `stopped` cuts the wait short too. An upload that stored nothing for
 * `uploadStallMs` is abandoned here (the batch is cancelled with what it processed, see `abandonUpload`).
 */
export async function awaitSegments(
  services: Pick<Services, 'batches' | 'clock'>,
  key: string,
  known: number,
  wait: { maxWaitMs: number; stopped?: () => boolean; sleep?: (ms: number) => Promise<void> },
): Promise<SegmentsKnown> {
  const sleep = wait.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const until = Date.now() + wait.maxWaitMs;
  for (;;) {
    const batch = await services.batches.get(key);
    if (!batch) return { segments: known, uploadOpen: false, schedules: false };
    if (uploadStalled(batch, services.clock.now().getTime())) {
      const reason = `no part of the body was stored for ${uploadStallMs / 60_000} minutes`;
      const ended = await changeBatch(services.batches, key, (current) => {
        const step = uploadStalled(current, services.clock.now().getTime()) ? abandonUpload(current, storedSoFar(current), reason) : undefined;
        return step?.ok ? step.value : undefined;
      });
      const after = ended ?? batch;
      return { segments: after.payload.segments, uploadOpen: uploadOpen(after), schedules: ended ? schedulesSegments(ended.status) : false };
    }
    const seen = { segments: batch.payload.segments, uploadOpen: uploadOpen(batch), schedules: schedulesSegments(batch.status) };
    if (seen.segments > known || !seen.uploadOpen || !seen.schedules || wait.stopped?.() || Date.now() >= until) return seen;
    await sleep(Math.min(uploadPollMs, Math.max(1, until - Date.now())));
  }
}
