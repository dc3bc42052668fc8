// The naive design the benchmark compares batchmem with: the memories travel in the workflow input, and each chunk
// of them again in an activity's input. Deterministic code only (imports @temporalio/workflow and types).
import { condition, proxyActivities } from '@temporalio/workflow';
import type { MemoryItem } from '../../src/domain/memory.ts';
import type { NaiveActivities } from './naive-activities.ts';

export interface NaiveIngestInput {
  batchKey: string;
  memories: MemoryItem[];
  /** Memories per activity call: the product's segment size, so both designs write the sink the same way. */
  chunkSize: number;
  /** Activity calls in flight: the product's segment concurrency. */
  parallelism: number;
}

const { writeMemories } = proxyActivities<NaiveActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 5 },
});

export async function naiveIngest(input: NaiveIngestInput): Promise<{ written: number }> {
  let running = 0;
  let written = 0;
  for (let first = 0; first < input.memories.length; first += input.chunkSize) {
    await condition(() => running < input.parallelism);
    running += 1;
    void writeMemories({ batchKey: input.batchKey, firstIndex: first, memories: input.memories.slice(first, first + input.chunkSize) }).then(
      (count) => {
        written += count;
        running -= 1;
      },
    );
  }
  await condition(() => running === 0);
  return { written };
}
