// The result files of a batch: one NDJSON line per item outcome, read page by page from the memory sink and the
// batch store so that memory stays flat whatever the batch size. Nothing here holds more than one page per source.
import type { Batch } from '../../domain/batch.ts';
import { expiredItems, isFinal } from '../../domain/lifecycle.ts';
import { itemOutcome, type ItemOutcomeName, type WriteOutcomeName } from '../../domain/progress.ts';
import type { Services } from '../services.ts';

export type ResultFileKind = 'results' | 'errors';

/** What a line says of one item. `expired` only in an expired batch, for the items without an outcome. */
export interface ResultLine {
  index: number;
  external_id: string | null;
  outcome: ItemOutcomeName;
  memory_id: string | null;
  /** For a succeeded item: what its write did (created, updated, unchanged); null otherwise. */
  memory_outcome: WriteOutcomeName | null;
  error: string | null;
  /** With a forwarding sink (BATCHMEM_SINK=http): the id the target gave the memory, when it named one. */
  sink_id?: string;
}

/** Rows read per query from each source. */
export const resultPageSize = 1000;

const expiredError = 'not processed before the completion window passed';

async function* paged<T extends { index: number }>(
  read: (afterIndex: number, limit: number) => Promise<T[]>,
  afterIndex: number,
): AsyncGenerator<T> {
  for (;;) {
    const page = await read(afterIndex, resultPageSize);
    yield* page;
    if (page.length < resultPageSize) return;
    afterIndex = page.at(-1)!.index;
  }
}

/**
 * Every item outcome of `batch` from `fromIndex` on, in index order: `results` holds all of them, `errors` the ones
 * that did not succeed. Stored memories and item errors are merged by index; in an expired batch the indexes with
 * neither are its expired items (their external id is not kept outside the payload, so it is null).
 */
export async function* resultLines(services: Services, batch: Batch, kind: ResultFileKind, fromIndex = 0): AsyncGenerator<ResultLine> {
  const after = fromIndex - 1;
  const storedPage = (afterIndex: number, limit: number) => services.sink.listByBatch(batch.key, afterIndex, limit);
  const fillExpired = expiredItems(batch) > 0;
  // The errors file needs the stored memories too when some items expired: an index with no memory and no error is
  // an expired item, and only the memories tell the stored ones apart.
  const stored = kind === 'results' || fillExpired ? paged(storedPage, after) : undefined;
  const failed = paged((a, l) => services.batches.listErrors(batch.key, a, l), after);
  let nextStored = stored ? await stored.next() : undefined;
  let nextFailed = await failed.next();
  let expected = fromIndex;
  const gapsUpTo = function* (index: number): Generator<ResultLine> {
    if (fillExpired) {
      for (; expected < index; expected += 1) {
        yield { index: expected, external_id: null, outcome: itemOutcome.expired, memory_id: null, memory_outcome: null, error: expiredError };
      }
    }
    expected = Math.max(expected, index + 1);
  };
  for (;;) {
    const memory = nextStored && !nextStored.done ? nextStored.value : undefined;
    const error = !nextFailed.done ? nextFailed.value : undefined;
    if (!memory && !error) break;
    if (memory && (!error || memory.index < error.index)) {
      yield* gapsUpTo(memory.index);
      if (kind === 'results') yield {
        index: memory.index,
        external_id: memory.externalId,
        outcome: itemOutcome.succeeded,
        memory_id: memory.memoryId,
        memory_outcome: memory.outcome,
        error: null,
        ...(memory.sinkId ? { sink_id: memory.sinkId } : {}),
      };
      nextStored = await stored!.next();
    } else {
      yield* gapsUpTo(error!.index);
      yield { index: error!.index, external_id: error!.externalId, outcome: itemOutcome.failed, memory_id: null, memory_outcome: null, error: error!.error };
      nextFailed = await failed.next();
    }
  }
  yield* gapsUpTo(batch.counts.total);
}

/**
 * A strong validator for a result file: its bytes no longer change once the batch is final (its counts are frozen),
 * so the final status and counts name them. Undefined while the batch runs (the file still grows).
 */
export function resultFileTag(batch: Batch, kind: ResultFileKind): string | undefined {
  if (!isFinal(batch.status)) return undefined;
  const { succeeded, failed, total } = batch.counts;
  return `"${kind}-${batch.key}-${batch.status}-${total}-${succeeded}-${failed}"`;
}
