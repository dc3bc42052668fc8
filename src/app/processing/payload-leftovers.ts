// Segments of refused uploads that could not be deleted at once (the payload store refused or failed the delete).
// The client's answer never waits on them: they are reported, kept here, and a sweep deletes them later.
import type { PayloadStore } from '../../ports/payload-store.ts';

export interface LeftoverEvents {
  /** A prefix could not be removed now; `error` says why (it names the keys left when the store gave them). */
  left?(prefix: string, error: unknown): void;
  /** A later sweep removed a prefix left behind earlier, `objects` objects in all. */
  removed?(prefix: string, objects: number): void;
}

export interface LeftoverSweep {
  removed: number;
  remaining: number;
}

/** Upload folders (payload prefixes) no batch points at, waiting to be deleted. One process's own; not durable. */
export class LeftoverPayloads {
  readonly #prefixes = new Set<string>();
  readonly #events: LeftoverEvents;

  constructor(events: LeftoverEvents = {}) {
    this.#events = events;
  }

  get size(): number {
    return this.#prefixes.size;
  }

  has(prefix: string): boolean {
    return this.#prefixes.has(prefix);
  }

  add(prefix: string, error: unknown): void {
    this.#prefixes.add(prefix);
    this.#events.left?.(prefix, error);
  }

  /** Tries every prefix once more; those that fail again stay for the next sweep. */
  async sweep(payloads: PayloadStore): Promise<LeftoverSweep> {
    let removed = 0;
    for (const prefix of [...this.#prefixes]) {
      try {
        const objects = await payloads.deletePrefix(prefix);
        this.#prefixes.delete(prefix);
        removed += 1;
        this.#events.removed?.(prefix, objects);
      } catch (error) {
        this.#events.left?.(prefix, error);
      }
    }
    return { removed, remaining: this.#prefixes.size };
  }
}

/**
 * Deletes the segments of an upload that will not become a batch. Never throws: a delete that fails is reported to
 * `leftovers` (for a later sweep) so that the caller answers with its own outcome, not with the cleanup's failure.
 */
export async function discardUpload(payloads: PayloadStore, leftovers: LeftoverPayloads | undefined, prefix: string): Promise<void> {
  try {
    await payloads.deletePrefix(prefix);
  } catch (error) {
    leftovers?.add(prefix, error);
  }
}

/** Sweeps every `intervalMs` until stopped; `stop` waits for a running sweep. */
export function scheduleLeftoverSweep(leftovers: LeftoverPayloads, payloads: PayloadStore, intervalMs: number): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    if (leftovers.size > 0) running = leftovers.sweep(payloads);
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
