// The naive design's one activity: write a chunk of memories, received in its input, to the same SQLite sink
// batchmem writes to (same record shape, same idempotent ids).
import { toMemoryRecord, type MemoryItem } from '../../src/domain/memory.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';

const tenant = { organization: 'bench', namespace: 'bench', user: 'bench', workspace: 'bench' };

export function createNaiveActivities(sink: MemorySink) {
  return {
    async writeMemories(input: { batchKey: string; firstIndex: number; memories: MemoryItem[] }): Promise<number> {
      const records = input.memories.map((item, offset) => toMemoryRecord(input.batchKey, tenant, input.firstIndex + offset, item));
      const outcomes = await sink.writeSegment(records);
      return outcomes.filter((outcome) => outcome.ok).length;
    },
  };
}

export type NaiveActivities = ReturnType<typeof createNaiveActivities>;
