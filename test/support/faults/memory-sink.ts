// A MemorySink decorator that injects faults, for reliability tests only (BATCHMEM_FAULT_* settings).
// A failed call throws before writing, like a backend that is down; a marked item gets a per-item rejection.
import { writeFileSync } from 'node:fs';
import type { MemoryRecord } from '../../../src/domain/memory.ts';
import type { WriteCounts } from '../../../src/domain/progress.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../../src/ports/memory-sink.ts';

export interface FaultPlan {
  /** Fraction of writeSegment calls that fail outright. */
  segmentFailureRate: number;
  /** Items whose content contains this string are rejected. */
  itemMarker?: string | undefined;
  /** After this many writeSegment calls the sink stops answering: later calls never settle (a hung pipeline). */
  stallAfterCalls?: number | undefined;
  /** A write of a segment holding an item whose content contains this text waits until `releaseHeld()` (a batch kept running). */
  holdMarker?: string | undefined;
  /** The first write of a segment holding an item with this text ends the thread with an uncaught error. */
  crashMarker?: string | undefined;
  /** Made by the crash, so that the thread started again (and any later one) does not crash too. */
  crashOnceFile?: string | undefined;
  random?: () => number;
}

export class FaultySink implements MemorySink {
  readonly #inner: MemorySink;
  readonly #plan: FaultPlan;
  #calls = 0;
  readonly #held = new Set<(error: Error) => void>();

  constructor(inner: MemorySink, plan: FaultPlan) {
    this.#inner = inner;
    this.#plan = plan;
  }

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    this.#calls += 1;
    if (this.#plan.stallAfterCalls !== undefined && this.#calls > this.#plan.stallAfterCalls) {
      await new Promise<never>(() => undefined);
    }
    const crash = this.#plan.crashMarker;
    if (crash && this.#plan.crashOnceFile && records.some((r) => r.content.includes(crash))) {
      try {
        writeFileSync(this.#plan.crashOnceFile, '', { flag: 'wx' });
        // Thrown outside any promise, the way a bug in a callback would: nothing catches it.
        setImmediate(() => {
          throw new Error('injected fault: the processing thread crashed');
        });
        await new Promise<never>(() => undefined);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    const hold = this.#plan.holdMarker;
    if (hold && records.some((r) => r.content.includes(hold))) {
      await new Promise<never>((_resolve, reject) => this.#held.add(reject));
    }
    if ((this.#plan.random ?? Math.random)() < this.#plan.segmentFailureRate) {
      throw new Error('injected fault: the memory sink is unavailable');
    }
    const marker = this.#plan.itemMarker;
    const rejected = new Set(marker ? records.filter((r) => r.content.includes(marker)).map((r) => r.index) : []);
    const accepted = await this.#inner.writeSegment(records.filter((r) => !rejected.has(r.index)));
    const byIndex = new Map(accepted.map((o) => [o.index, o]));
    return records.map(
      (r) => byIndex.get(r.index) ?? { index: r.index, ok: false as const, error: 'rejected by the memory store (injected fault)' },
    );
  }

  /** Ends every held write with an error, so a runner waiting on one can stop (the test's shutdown). */
  releaseHeld(): void {
    for (const reject of this.#held) reject(new Error('injected fault: a held write was released'));
    this.#held.clear();
  }

  listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    return this.#inner.listByBatch(batchKey, afterIndex, limit);
  }

  countOutcomes(batchKey: string): Promise<WriteCounts> {
    return this.#inner.countOutcomes(batchKey);
  }

  prepare(): Promise<string | undefined> {
    return this.#inner.prepare();
  }

  check(): Promise<void> {
    return this.#inner.check();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
