// The naive design batchmem replaces, for side-by-side tests: the memories travel in the workflow input and again
// in the input of the one activity that stores them. Deterministic code only; bundled by the SDK for a test worker.
import { proxyActivities } from '@temporalio/workflow';

export interface NaiveActivities {
  storeMemories(input: { batchKey: string; memories: unknown[] }): Promise<number>;
}

const { storeMemories } = proxyActivities<NaiveActivities>({ startToCloseTimeout: '5 minutes' });

export async function naiveProcessBatch(input: { batchKey: string; memories: unknown[] }): Promise<number> {
  return await storeMemories(input);
}
