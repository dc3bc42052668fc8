// Process one segment: read it, check it, write its memories to the sink, record its outcome once.
import { setImmediate } from 'node:timers/promises';
import { releaseBuffer } from '../../domain/buffer-release.ts';
import { acceptsSegmentOutcomes } from '../../domain/lifecycle.ts';
import { decodeSegment, segmentItems, segmentKey } from '../../domain/codec.ts';
import type { SegmentCorrupt } from '../../domain/errors.ts';
import { asInvalidItem } from '../../domain/invalid-items.ts';
import { type MemoryItem, type MemoryRecord, toMemoryRecord } from '../../domain/memory.ts';
import { type Counts, type WriteOutcomeName, writeCountsOfOutcomes } from '../../domain/progress.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import type { ItemError } from '../../ports/batch-repository.ts';
import type { ItemOutcome } from '../../ports/memory-sink.ts';
import { PayloadChecksumError } from '../../ports/payload-store.ts';
import type { Services } from '../services.ts';
import { withSpan } from '../tracing.ts';

export type SegmentResult =
  | { status: 'recorded'; applied: boolean; succeeded: number; failed: number; counts: Counts }
  | { status: 'skipped'; reason: string };

/** Records built per turn of the event loop (see processOnce). */
const recordsPerTurn = 100;

export interface SegmentRef {
  key: string;
  segment: number;
  workerId: string;
}

/**
 * Safe to run any number of times for the same segment: memory ids are derived from batch and index, and the
 * ledger keeps the first outcome (per redrive, in a redrive: then only the segment's failed items are written again). A corrupt segment is a typed error (not retryable); a backend failure throws.
 */
export function processSegment(services: Services, ref: SegmentRef): Promise<Result<SegmentResult, SegmentCorrupt>> {
  return withSpan('batchmem.segment', { 'batchmem.batch_key': ref.key, 'batchmem.segment': ref.segment }, async () => {
    try {
      const result = await processOnce(services, ref);
      if (!result.ok) services.observer?.segmentFailed('corrupt');
      return result;
    } catch (error) {
      services.observer?.segmentFailed('error');
      throw error;
    }
  });
}

async function processOnce(services: Services, ref: SegmentRef): Promise<Result<SegmentResult, SegmentCorrupt>> {
  const startedAt = performance.now();
  const batch = await services.batches.get(ref.key);
  if (!batch) return ok({ status: 'skipped', reason: 'batch does not exist' });
  if (!acceptsSegmentOutcomes(batch.status)) return ok({ status: 'skipped', reason: `batch is ${batch.status}` });
  if (ref.segment < 0 || ref.segment >= batch.payload.segments) return ok({ status: 'skipped', reason: 'no such segment' });

  const name = segmentKey(batch.payload.prefix, ref.segment, batch.payload.codec);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await services.payloads.get(name);
  } catch (cause) {
    if (cause instanceof PayloadChecksumError) return err({ kind: 'segment_corrupt', reason: `${name}: ${cause.message}` });
    throw cause;
  }
  if (!bytes) return err({ kind: 'segment_corrupt', reason: `${name} is missing from the payload store` });
  const decoded = decodeSegment(bytes);
  if (!decoded.ok) return err({ kind: 'segment_corrupt', reason: `${name}: ${decoded.error.reason}` });
  const items = segmentItems(decoded.value);
  // The decoded bytes (a segment's raw size, decompressed for this call alone) are parsed: their memory goes back
  // now rather than at this thread's next full collection (buffer-release.ts).
  releaseBuffer(decoded.value.ndjson);
  if (!items.ok) return err({ kind: 'segment_corrupt', reason: `${name}: ${items.error.reason}` });

  const { firstIndex } = decoded.value.header;
  // Invalid items recorded at upload (`invalid_items: "record"`) are failures in their place; the rest are written.
  const itemErrors: ItemError[] = [];
  let records: MemoryRecord[] = [];
  for (let offset = 0; offset < items.value.length; offset += 1) {
    // A segment's records (three SHA-256 and a canonical text each) took 20 to 30 ms in one stretch, during which
    // the other segments' answers waited and an HTTP sink's freed request slots stayed idle; in turns of 100 records
    // delivery to a receiver holding each request 50 ms went 7 to 12% faster, at the same CPU (docs/benchmarks.md).
    if (offset > 0 && offset % recordsPerTurn === 0) await setImmediate();
    const item = items.value[offset];
    const invalid = asInvalidItem(item);
    if (invalid) itemErrors.push({ index: firstIndex + offset, externalId: invalid.externalId, error: invalid.error });
    else records.push(toMemoryRecord(batch.key, batch.tenant, firstIndex + offset, item as MemoryItem, batch.memoryDefaults, batch.onExisting ?? undefined));
  }
  // In a redrive a segment the first run recorded is processed again for its failed items only (an invalid item
  // stays failed: it is not written, and keeps its error).
  const redrive = batch.redrives ?? 0;
  const redriving = redrive > 0 && (await services.batches.listSegments(ref.key)).some((s) => s.segment === ref.segment);
  if (redriving) {
    const failed = new Set((await services.batches.listErrors(ref.key, firstIndex - 1, items.value.length)).map((e) => e.index));
    records = records.filter((r) => failed.has(r.index));
  }
  const byIndex = new Map(records.map((record) => [record.index, record]));
  const outcomes = records.length === 0 ? [] : await writeToSink(services, records);
  if (redriving) {
    const failedAgain: ItemError[] = [];
    const recovered: { index: number; outcome: WriteOutcomeName }[] = [];
    for (const outcome of outcomes) {
      if (outcome.ok) recovered.push({ index: outcome.index, outcome: outcome.outcome });
      else failedAgain.push({ index: outcome.index, externalId: byIndex.get(outcome.index)?.externalId ?? null, error: outcome.error });
    }
    const recorded = await services.batches.recordRedrive(batch.key, { redrive, segment: ref.segment, recovered, failedAgain }, ref.workerId);
    services.observer?.segmentProcessed(performance.now() - startedAt, recovered.length, failedAgain.length, recorded.applied);
    return ok({ status: 'recorded', applied: recorded.applied, succeeded: recovered.length, failed: failedAgain.length, counts: recorded.counts });
  }
  // The write outcomes go to the ledger with the counts, in one step, so reads always find them adding up. They are
  // the sink's, which reports a rewritten item's first outcome: a segment run again after a crash between its writes
  // and its record is recorded with the outcomes of its first run.
  const written: WriteOutcomeName[] = [];
  for (const outcome of outcomes) {
    if (outcome.ok) written.push(outcome.outcome);
    else itemErrors.push({ index: outcome.index, externalId: byIndex.get(outcome.index)?.externalId ?? null, error: outcome.error });
  }
  const succeeded = written.length;
  const recorded = await services.batches.recordSegment(
    batch.key,
    { segment: ref.segment, succeeded, failed: itemErrors.length, written: writeCountsOfOutcomes(written) },
    itemErrors,
    ref.workerId,
  );
  services.observer?.segmentProcessed(performance.now() - startedAt, succeeded, itemErrors.length, recorded.applied);
  return ok({ status: 'recorded', applied: recorded.applied, succeeded, failed: itemErrors.length, counts: recorded.counts });
}

/** One sink call for the segment's records, traced and measured. */
function writeToSink(services: Services, records: MemoryRecord[]): Promise<ItemOutcome[]> {
  return withSpan('batchmem.sink.write', { 'batchmem.items': records.length }, async () => {
    const writeStartedAt = performance.now();
    try {
      const written = await services.sink.writeSegment(records);
      services.observer?.sinkWritten(performance.now() - writeStartedAt, records.length, true);
      return written;
    } catch (error) {
      services.observer?.sinkWritten(performance.now() - writeStartedAt, records.length, false);
      throw error;
    }
  });
}
