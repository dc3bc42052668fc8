// Facts about what a sink stored, read through the port's own production method rather than a test-only one.
import { writeOutcomes } from '../../src/domain/progress.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';

/** How many items of a batch the sink stored, each index once: its write outcomes (created, updated, unchanged) added up. */
export async function storedCount(sink: Pick<MemorySink, 'countOutcomes'>, batchKey: string): Promise<number> {
  const counts = await sink.countOutcomes(batchKey);
  return writeOutcomes.reduce((sum, outcome) => sum + counts[outcome], 0);
}
