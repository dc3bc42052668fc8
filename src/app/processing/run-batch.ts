// Runs a whole batch in this process: the embedded orchestrator's loop. Temporal's workflow follows the same steps
// (begin, segments in parallel, finalize; then the webhook, delivered apart so a slow receiver holds no batch slot) with activities that call the same use cases.
import pLimit from 'p-limit';
import { schedulesSegments } from '../../domain/lifecycle.ts';
import type { Services } from '../services.ts';
import { beginBatch } from './begin-batch.ts';
import { deliverWebhook, webhookDelayMs } from './deliver-webhook.ts';
import { finalizeBatch } from './finalize-batch.ts';
import { processSegment } from './process-segment.ts';

export interface RunOptions {
  workerId: string;
  /** Aborted on cancel or shutdown: no new segment starts; running ones finish. */
  signal: AbortSignal;
  /** Called after each failed attempt of a segment (for logs and metrics). */
  onSegmentError?: (segment: number, attempt: number, error: unknown) => void;
  onSegmentDone?: (segment: number, durationMs: number) => void;
}

export type RunEnd = 'finished' | 'interrupted';

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export async function runBatch(ctx: Services, key: string, options: RunOptions): Promise<RunEnd> {
  const plan = await beginBatch(ctx, key);
  if (!plan) return 'finished';
  let failure: string | undefined;
  if (schedulesSegments(plan.status)) {
    const done = new Set(plan.doneSegments);
    const limit = pLimit(ctx.settings.segmentConcurrency);
    const stop = () => options.signal.aborted || failure !== undefined;
    const runOne = async (segment: number) => {
      for (let attempt = 1; !stop(); attempt += 1) {
        const startedAt = performance.now();
        try {
          const result = await processSegment(ctx, { key, segment, workerId: options.workerId });
          if (!result.ok) failure = result.error.reason;
          else options.onSegmentDone?.(segment, performance.now() - startedAt);
          return;
        } catch (error) {
          options.onSegmentError?.(segment, attempt, error);
          if (attempt >= ctx.settings.segmentMaxAttempts) {
            failure = `segment ${segment + 1} failed ${attempt} times: ${(error as Error).message}`;
            return;
          }
          await sleep(Math.min(30_000, 200 * 2 ** attempt), options.signal);
        }
      }
    };
    const pending: Promise<void>[] = [];
    for (let segment = 0; segment < plan.segments; segment += 1) {
      if (!done.has(segment)) pending.push(limit(() => (stop() ? undefined : runOne(segment))));
    }
    await Promise.all(pending);
    // Shutdown (not cancel) leaves the batch as it is, for the next start to resume.
    const current = await ctx.batches.get(key);
    if (options.signal.aborted && current && schedulesSegments(current.status)) return 'interrupted';
  }
  await finalizeBatch(ctx, key, failure);
  return 'finished';
}

/** Retries the final webhook with backoff; a dead receiver only costs attempts, never the batch's status. */
export async function deliverWithRetries(ctx: Services, key: string, signal: AbortSignal): Promise<void> {
  const { webhookMaxAttempts, webhookBaseDelayMs, webhookMaxDelayMs } = ctx.settings;
  while (!signal.aborted) {
    const step = await deliverWebhook(ctx, key);
    if (step.status === 'nothing_to_send' || step.attempt.delivered) return;
    if (step.attempts >= webhookMaxAttempts || !step.attempt.retryable) return;
    await sleep(webhookDelayMs(step.attempts, webhookBaseDelayMs, webhookMaxDelayMs), signal);
  }
}
