// The progress ledger: each segment's outcome counts once, whatever the order or number of deliveries.
// Pure and import-free, so workflow code may use it too. `recordOutcome` is the merge rule and `countsOf` the counts
// it gives; every BatchRepository applies the rule in its own store (a unique row per segment, the counters moved
// by `addOutcome` in the same transaction), and the repository contract suite checks, on every adapter, that any
// order and duplication of outcomes leaves exactly the counts `countsOf` gives.

/**
 * What became of one item: stored, or rejected with a reason, or (in an expired batch only) never processed before the
 * completion window passed. Named here once: the results API, its schema and the metrics take them from this list,
 * so adding an outcome starts here.
 */
export const itemOutcome = { succeeded: 'succeeded', failed: 'failed', expired: 'expired' } as const;
export type ItemOutcomeName = (typeof itemOutcome)[keyof typeof itemOutcome];
export const itemOutcomes = Object.values(itemOutcome) as [ItemOutcomeName, ...ItemOutcomeName[]];

/**
 * What storing a succeeded item did to the tenant's memories, with upsert by `external_id`: a new memory
 * (`created`), a known external id whose value changed (`updated`, its version moves up), or one stored already with
 * the same value, or left alone by `on_existing: "skip"` (`unchanged`). Every succeeded item has exactly one.
 */
export const writeOutcome = { created: 'created', updated: 'updated', unchanged: 'unchanged' } as const;
export type WriteOutcomeName = (typeof writeOutcome)[keyof typeof writeOutcome];
export const writeOutcomes = Object.values(writeOutcome) as [WriteOutcomeName, ...WriteOutcomeName[]];

/** How many of a batch's succeeded items had each write outcome; the three add up to `succeeded`. */
export type WriteCounts = Record<WriteOutcomeName, number>;

export function emptyWriteCounts(): WriteCounts {
  return { created: 0, updated: 0, unchanged: 0 };
}

/** `a` plus `b`, outcome by outcome. */
export function addWriteCounts(a: WriteCounts, b: WriteCounts): WriteCounts {
  return { created: a.created + b.created, updated: a.updated + b.updated, unchanged: a.unchanged + b.unchanged };
}

/** Counts the outcomes of a list (a segment's succeeded items, a redrive's recovered ones). */
export function writeCountsOfOutcomes(outcomes: Iterable<WriteOutcomeName>): WriteCounts {
  const counts = emptyWriteCounts();
  for (const outcome of outcomes) counts[outcome] += 1;
  return counts;
}

export interface Counts {
  total: number;
  processed: number;
  succeeded: number;
  failed: number;
}

export interface SegmentOutcome {
  segment: number;
  succeeded: number;
  failed: number;
  /** How the succeeded items were written: the three add up to `succeeded` (`checkSegmentOutcome`). */
  written: WriteCounts;
}

/**
 * Throws a RangeError for an outcome no store may record: negative numbers, or write outcomes that do not add up to
 * `succeeded` (a caller's bug; recording it would make every later read of the batch disagree with itself).
 */
export function checkSegmentOutcome(outcome: SegmentOutcome): void {
  const { created, updated, unchanged } = outcome.written;
  const numbers = [outcome.succeeded, outcome.failed, created, updated, unchanged];
  if (!numbers.every((n) => Number.isInteger(n) && n >= 0)) throw new RangeError(`segment ${outcome.segment}: counts must be whole numbers >= 0`);
  if (created + updated + unchanged !== outcome.succeeded) {
    throw new RangeError(`segment ${outcome.segment}: created + updated + unchanged (${created + updated + unchanged}) is not succeeded (${outcome.succeeded})`);
  }
}

export interface Ledger {
  total: number;
  outcomes: ReadonlyMap<number, SegmentOutcome>;
}

export function emptyLedger(total: number): Ledger {
  return { total, outcomes: new Map() };
}

/** The first outcome recorded for a segment wins; a repeat (a retried or duplicated delivery) is ignored. */
export function recordOutcome(ledger: Ledger, outcome: SegmentOutcome): { ledger: Ledger; applied: boolean } {
  if (ledger.outcomes.has(outcome.segment)) return { ledger, applied: false };
  const outcomes = new Map(ledger.outcomes);
  outcomes.set(outcome.segment, outcome);
  return { ledger: { total: ledger.total, outcomes }, applied: true };
}

/** The write outcomes the ledger's segments add up to. */
export function writtenOf(ledger: Ledger): WriteCounts {
  let written = emptyWriteCounts();
  for (const outcome of ledger.outcomes.values()) written = addWriteCounts(written, outcome.written);
  return written;
}

export function countsOf(ledger: Ledger): Counts {
  let succeeded = 0;
  let failed = 0;
  for (const outcome of ledger.outcomes.values()) {
    succeeded += outcome.succeeded;
    failed += outcome.failed;
  }
  return { total: ledger.total, processed: succeeded + failed, succeeded, failed };
}

/** Adds a newly applied outcome to stored counters (for stores that keep counters rather than the ledger). */
export function addOutcome(counts: Counts, outcome: SegmentOutcome): Counts {
  return {
    total: counts.total,
    processed: counts.processed + outcome.succeeded + outcome.failed,
    succeeded: counts.succeeded + outcome.succeeded,
    failed: counts.failed + outcome.failed,
  };
}

/** A redrive's segment outcome: `recovered` items move from failed to succeeded; `processed` does not change. */
export function addRecovered(counts: Counts, recovered: number): Counts {
  return { ...counts, succeeded: counts.succeeded + recovered, failed: counts.failed - recovered };
}

export function progressFraction(counts: Counts): number {
  return counts.total === 0 ? 1 : Math.min(1, counts.processed / counts.total);
}

export function isComplete(counts: Counts): boolean {
  return counts.processed >= counts.total;
}
