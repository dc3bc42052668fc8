// The one loop behind the periodic sweeps (payload expiry, orphaned uploads): run now, then again `intervalMs` after
// each run ends (never two at once), until stopped.

/** A running schedule; `stop` cancels the next run and waits for a running one to end. */
export interface SweepSchedule {
  stop(): Promise<void>;
}

/**
 * Runs `sweep` at once and then `intervalMs` after each run ends, passing each result to `onSweep` and each failure
 * to `onError` (a failed run does not stop the schedule).
 */
export function scheduleSweeps<T>(
  sweep: () => Promise<T>,
  options: { intervalMs: number; onSweep?: ((result: T) => void) | undefined; onError?: ((error: unknown) => void) | undefined },
): SweepSchedule {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const tick = () => {
    running = sweep()
      .then((result) => options.onSweep?.(result), (error: unknown) => options.onError?.(error))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, options.intervalMs);
      });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
