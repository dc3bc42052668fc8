// Test-only entry point: the real `batchmem` command, with a fault-injecting decorator around the configured memory
// sink. `serverProcess` runs it instead of src/app/cli.ts when a test sets any BATCHMEM_FAULT_* variable:
//   BATCHMEM_FAULT_SEGMENT_FAILURE_RATE  fraction (0..1) of segment writes that fail outright
//   BATCHMEM_FAULT_ITEM_MARKER           items whose content holds this text are rejected one by one
//   BATCHMEM_FAULT_SINK_STALL_AFTER      after this many segment writes the sink never answers again
//   BATCHMEM_FAULT_HOLD_MARKER           segments holding an item with this text are held until the process stops
// The product knows nothing of these variables; its composition root only offers the decorator seam.
import { z } from 'zod';
import { runCli } from '../../../src/app/commands.ts';
import type { AdapterDecorators } from '../../../src/app/wire.ts';
import { FaultySink } from './memory-sink.ts';

const faultSchema = z.object({
  BATCHMEM_FAULT_SEGMENT_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  BATCHMEM_FAULT_ITEM_MARKER: z.string().optional(),
  BATCHMEM_FAULT_SINK_STALL_AFTER: z.coerce.number().int().min(0).optional(),
  BATCHMEM_FAULT_HOLD_MARKER: z.string().optional(),
});

/** The decorators the BATCHMEM_FAULT_* variables ask for; none when they ask for no fault. */
export function faultDecorators(env: NodeJS.ProcessEnv): AdapterDecorators {
  const plan = faultSchema.parse(env);
  const faulty = plan.BATCHMEM_FAULT_SEGMENT_FAILURE_RATE > 0 || plan.BATCHMEM_FAULT_ITEM_MARKER ||
    plan.BATCHMEM_FAULT_SINK_STALL_AFTER !== undefined || plan.BATCHMEM_FAULT_HOLD_MARKER;
  if (!faulty) return {};
  return {
    sink: (sink) => {
      const decorated = new FaultySink(sink, {
        segmentFailureRate: plan.BATCHMEM_FAULT_SEGMENT_FAILURE_RATE,
        itemMarker: plan.BATCHMEM_FAULT_ITEM_MARKER,
        stallAfterCalls: plan.BATCHMEM_FAULT_SINK_STALL_AFTER,
        holdMarker: plan.BATCHMEM_FAULT_HOLD_MARKER,
      });
      // A held write would keep the graceful shutdown waiting: it ends when the process is asked to stop.
      for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => decorated.releaseHeld());
      return decorated;
    },
  };
}

runCli(process.argv.slice(2), faultDecorators(process.env));
