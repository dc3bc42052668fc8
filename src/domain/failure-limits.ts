// Tolerated failures: how many failed items a batch accepts before it stops (`max_failed_items`,
// `max_failed_percent`). Pure and import-free (types aside), so workflow code decides with the same rule.
import type { FieldIssue } from './errors.ts';
import type { Counts } from './progress.ts';

/**
 * A batch's failure limits, as the client sent them; either may be null (no such limit). Once the failed items exceed
 * one of them no new segment starts and the batch ends `failed` with the reason (`finish` in lifecycle.ts).
 */
export interface FailureLimits {
  /** Failed items allowed; one more stops the batch. 0 stops it at the first failed item. */
  maxFailedItems: number | null;
  /** Failed items allowed as a percentage of the batch's total (0 to 100, fractions allowed). */
  maxFailedPercent: number | null;
}

/**
 * Bounds of the options. `max_failed_items` is a whole number up to a billion (far above any batch; larger would
 * only mean "no limit", which is leaving it out); `max_failed_percent` a percentage, at most 4 decimals.
 */
export const failureLimitBounds = { maxItems: 1_000_000_000, maxPercent: 100 } as const;

/** The options as sent (unknown types) checked: the limits, or the problems each with its path. */
export function parseFailureLimits(sent: { maxFailedItems?: unknown; maxFailedPercent?: unknown }):
  | { ok: true; limits: FailureLimits | null }
  | { ok: false; issues: FieldIssue[] } {
  const issues: FieldIssue[] = [];
  const items = sent.maxFailedItems ?? null;
  const percent = sent.maxFailedPercent ?? null;
  if (items !== null && (typeof items !== 'number' || !Number.isSafeInteger(items) || items < 0 || items > failureLimitBounds.maxItems)) {
    issues.push({ path: 'max_failed_items', message: `must be a whole number from 0 to ${failureLimitBounds.maxItems}` });
  }
  if (
    percent !== null &&
    (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > failureLimitBounds.maxPercent ||
      Math.round(percent * 10_000) !== percent * 10_000)
  ) {
    issues.push({ path: 'max_failed_percent', message: `must be a number from 0 to ${failureLimitBounds.maxPercent} with at most 4 decimals` });
  }
  if (issues.length > 0) return { ok: false, issues };
  if (items === null && percent === null) return { ok: true, limits: null };
  return { ok: true, limits: { maxFailedItems: items as number | null, maxFailedPercent: percent as number | null } };
}

/**
 * Why the batch must stop, when its failed items exceed a limit; undefined while they do not (or without limits).
 * "Exceed" is strict: with `max_failed_items: 10` the eleventh failure stops it; with `max_failed_percent: 1` of
 * 20,000 items, the 201st. The percentage is of `total`, known from the upload, so it does not swing early on.
 */
export function failureLimitExceeded(counts: Counts, limits: FailureLimits | null | undefined): string | undefined {
  if (!limits) return undefined;
  const { failed, total } = counts;
  if (limits.maxFailedItems !== null && failed > limits.maxFailedItems) {
    return `${failed} ${failed === 1 ? 'memory' : 'memories'} failed, more than max_failed_items ${limits.maxFailedItems}; no new segment was started`;
  }
  // Compared in whole numbers of ten-thousandths of a percent, so 1% of 20,000 is exactly 200 (no float rounding).
  if (limits.maxFailedPercent !== null && failed * 1_000_000 > Math.round(limits.maxFailedPercent * 10_000) * total) {
    const share = total === 0 ? 0 : Math.round((failed / total) * 10_000) / 100;
    return `${failed} ${failed === 1 ? 'memory' : 'memories'} failed (${share}% of ${total}), more than max_failed_percent ${limits.maxFailedPercent}; no new segment was started`;
  }
  return undefined;
}
