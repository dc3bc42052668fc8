// The fault-injecting decorators the BATCHMEM_FAULT_* variables ask for (test support only):
//   BATCHMEM_FAULT_SEGMENT_FAILURE_RATE  fraction (0..1) of segment writes that fail outright
//   BATCHMEM_FAULT_ITEM_MARKER           items whose content holds this text are rejected one by one
//   BATCHMEM_FAULT_SINK_STALL_AFTER      after this many segment writes the sink never answers again
//   BATCHMEM_FAULT_HOLD_MARKER           segments holding an item with this text are held until the process stops
//   BATCHMEM_FAULT_CRASH_MARKER          the first segment holding an item with this text ends the processing
//                                        thread with an uncaught error (once per data directory)
// The product knows nothing of these variables; its composition root only offers the decorator seam. The processing
// thread loads this module by its URL (`module`) to wrap its own adapters the same way.
import { isMainThread } from 'node:worker_threads';
import { z } from 'zod';
import type { AdapterDecorators } from '../../../src/app/wire.ts';
import { FaultySink } from './memory-sink.ts';

const faultSchema = z.object({
  BATCHMEM_FAULT_SEGMENT_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  BATCHMEM_FAULT_ITEM_MARKER: z.string().optional(),
  BATCHMEM_FAULT_SINK_STALL_AFTER: z.coerce.number().int().min(0).optional(),
  BATCHMEM_FAULT_HOLD_MARKER: z.string().optional(),
  BATCHMEM_FAULT_CRASH_MARKER: z.string().optional(),
  BATCHMEM_DATA_DIR: z.string().default('./data'),
});

/** The decorators the BATCHMEM_FAULT_* variables of this process ask for; none when they ask for no fault. */
export function adapterDecorators(env: NodeJS.ProcessEnv = process.env): AdapterDecorators {
  const plan = faultSchema.parse(env);
  const faulty = plan.BATCHMEM_FAULT_SEGMENT_FAILURE_RATE > 0 || plan.BATCHMEM_FAULT_ITEM_MARKER ||
    plan.BATCHMEM_FAULT_SINK_STALL_AFTER !== undefined || plan.BATCHMEM_FAULT_HOLD_MARKER || plan.BATCHMEM_FAULT_CRASH_MARKER;
  if (!faulty) return {};
  const sinks: FaultySink[] = [];
  return {
    module: import.meta.url,
    sink: (sink) => {
      const decorated = new FaultySink(sink, {
        segmentFailureRate: plan.BATCHMEM_FAULT_SEGMENT_FAILURE_RATE,
        itemMarker: plan.BATCHMEM_FAULT_ITEM_MARKER,
        stallAfterCalls: plan.BATCHMEM_FAULT_SINK_STALL_AFTER,
        holdMarker: plan.BATCHMEM_FAULT_HOLD_MARKER,
        crashMarker: plan.BATCHMEM_FAULT_CRASH_MARKER,
        crashOnceFile: `${plan.BATCHMEM_DATA_DIR}/injected-crash-done`,
      });
      sinks.push(decorated);
      // Signals reach the main thread only; a `batchmem worker` process has no other shutdown hook.
      if (isMainThread) for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => decorated.releaseHeld());
      return decorated;
    },
    // A held write would keep the graceful shutdown waiting: it ends when the process is asked to stop.
    closing: () => {
      for (const sink of sinks) sink.releaseHeld();
    },
  };
}
