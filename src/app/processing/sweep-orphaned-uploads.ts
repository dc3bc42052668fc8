// Orphaned uploads: segments an upload wrote before its process died (SIGKILL, crash, power loss). A batch is recorded
// only once its upload completes (or, streamed, with its first segment), so such segments have no batch pointing at
// them and nothing else would ever delete them. Only folders nobody wrote to for a grace period are taken: a live
// upload, in this process or any other sharing the store, writes a segment at least every few minutes (see
// `uploadStallMs` in domain/lifecycle.ts) and records its batch right after its last one.
import type { Services } from '../services.ts';
import { scheduleSweeps, type SweepSchedule } from './sweep-schedule.ts';

export interface OrphanSweepEvents {
  /** A folder no batch points at, untouched for the grace period, was deleted with `objects` objects in it. */
  deleted?(prefix: string, objects: number): void;
  /** Deleting it failed; the next sweep tries again. */
  failed?(prefix: string, error: unknown): void;
}

export interface OrphanSweep {
  /** Folders the store listed. */
  folders: number;
  /** Orphaned folders deleted, and the objects they held. */
  deleted: number;
  objects: number;
  failures: number;
}

/**
 * The folders uploads make: `<URI-encoded organization>/<upload id>`, the id as `generatedId` in
 * requests/submit-batch.ts makes it. Nothing else is ever deleted, so a bucket that also holds other objects (or
 * folders of an older layout) loses none of them.
 */
const uploadFolder = /^[^/]+\/b_[0-9a-f]{32}$/;

/** How many old folders are looked up in the batch store at once. */
const lookupSize = 100;

/**
 * Deletes every upload folder that no batch record points at and that nothing was written to for `graceMs`
 * (by the store's clock, compared with `services.clock`). Reads the store and the batch store page by page: memory
 * stays bounded whatever the store holds. Safe to run from several processes at once (a delete repeats as a no-op).
 */
export async function sweepOrphanedUploads(services: Services, graceMs: number, events: OrphanSweepEvents = {}): Promise<OrphanSweep> {
  const sweep: OrphanSweep = { folders: 0, deleted: 0, objects: 0, failures: 0 };
  const cutoffMs = services.clock.now().getTime() - graceMs;
  let old: string[] = [];
  const settle = async () => {
    const candidates = old;
    old = [];
    const referenced = await services.batches.referencedPrefixes(candidates);
    for (const prefix of candidates) {
      if (referenced.has(prefix)) continue;
      try {
        const objects = await services.payloads.deletePrefix(prefix);
        sweep.deleted += 1;
        sweep.objects += objects;
        events.deleted?.(prefix, objects);
      } catch (error) {
        sweep.failures += 1;
        events.failed?.(prefix, error);
      }
    }
  };
  for await (const folder of services.payloads.folders()) {
    sweep.folders += 1;
    if (folder.lastWrittenAt.getTime() > cutoffMs || !uploadFolder.test(folder.prefix)) continue;
    old.push(folder.prefix);
    if (old.length >= lookupSize) await settle();
  }
  if (old.length > 0) await settle();
  return sweep;
}

export interface OrphanScheduleOptions {
  graceMs: number;
  /** Time between sweeps; an orphaned folder goes at most `graceMs` plus this after its last write. */
  intervalMs: number;
  events?: OrphanSweepEvents;
  onSweep?: (sweep: OrphanSweep) => void;
  onError?: (error: unknown) => void;
}

/** Sweeps now (at start-up) and then every `intervalMs` until stopped; `stop` waits for a running sweep to end. */
export function scheduleOrphanSweep(services: Services, options: OrphanScheduleOptions): SweepSchedule {
  return scheduleSweeps(() => sweepOrphanedUploads(services, options.graceMs, options.events), options);
}

/**
 * The grace period itself, between one second and an hour: a full listing of the store each time is not free (one
 * request per 1000 objects on S3), and an orphan waits at most twice the grace period.
 */
export function orphanSweepIntervalMs(graceMs: number): number {
  return Math.min(60 * 60_000, Math.max(1_000, graceMs));
}
