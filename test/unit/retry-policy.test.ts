import { describe, expect, it } from 'vitest';
import {
  attemptWithRetries,
  backoffMs,
  delayBeforeRetryMs,
  type DeliveryStep,
  mayRetry,
  retryDelivery,
  runRestartPolicy,
  segmentFailureMessage,
} from '../../src/domain/retry-policy.ts';

const policy = { maxAttempts: 4, initialDelayMs: 100, maxDelayMs: 1_000 };

describe('the retry policy', () => {
  it('doubles the ceiling per failure, capped, and waits between half and all of it', () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffMs(policy, n, () => 1))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(policy, n, () => 0))).toEqual([50, 100, 200, 400, 500]);
    for (let i = 0; i < 100; i += 1) {
      const delay = backoffMs(runRestartPolicy, 3);
      expect(delay).toBeGreaterThanOrEqual(500);
      expect(delay).toBeLessThanOrEqual(1_000);
    }
  });

  it('stops when attempts run out or the failure will not pass', () => {
    expect(mayRetry(policy, 3)).toBe(true);
    expect(mayRetry(policy, 4)).toBe(false);
    expect(mayRetry(policy, 1, false)).toBe(false);
    expect(mayRetry(runRestartPolicy, 1_000_000)).toBe(true);
  });

  it('retries a throwing step with the backoff until it succeeds', async () => {
    const waits: number[] = [];
    let calls = 0;
    const run = await attemptWithRetries(policy, async (attempt) => {
      calls += 1;
      if (attempt < 3) throw new Error(`boom ${attempt}`);
      return 'ok';
    }, { sleep: async (ms) => void waits.push(ms), stopped: () => false, random: () => 1 });
    expect(run).toEqual({ status: 'done', value: 'ok', attempts: 3 });
    expect(calls).toBe(3);
    expect(waits).toEqual([100, 200]);
  });

  it('gives up after the last attempt, or at once on a failure that will not pass, or stops when the run stops', async () => {
    const failing = async () => { throw new Error('down'); };
    const hooks = { sleep: async () => {}, stopped: () => false };
    expect(await attemptWithRetries(policy, failing, hooks)).toMatchObject({ status: 'gave_up', attempts: 4, retryable: true });
    expect(await attemptWithRetries(policy, failing, { ...hooks, retryable: () => false })).toMatchObject({ status: 'gave_up', attempts: 1, retryable: false });
    let stop = false;
    expect(await attemptWithRetries(policy, failing, { sleep: async () => { stop = true; }, stopped: () => stop })).toEqual({ status: 'stopped', attempts: 1 });
    expect(segmentFailureMessage(0, 4, 'down')).toBe('segment 1 failed 4 times: down');
  });

  it('delivers a webhook until it is delivered, refused, or out of recorded attempts', async () => {
    const script = (steps: DeliveryStep[]) => async () => steps.shift()!;
    const waits: number[] = [];
    const hooks = { sleep: async (ms: number) => void waits.push(ms), stopped: () => false, random: () => 1 };
    const undelivered = (attempts: number, retryable = true): DeliveryStep => ({ status: 'undelivered', retryable, attempts, error: '503' });
    expect(await retryDelivery(policy, script([undelivered(1), undelivered(2), { status: 'delivered' }]), hooks)).toBe('delivered');
    expect(waits).toEqual([100, 200]);
    expect(await retryDelivery(policy, script([undelivered(1, false)]), hooks)).toBe('not_delivered');
    // Resumed after a restart: the count goes on from the attempts recorded on the batch.
    expect(await retryDelivery(policy, script([undelivered(4)]), hooks)).toBe('not_delivered');
    expect(await retryDelivery(policy, script([{ status: 'nothing_to_send' }]), hooks)).toBe('nothing_to_send');
    expect(await retryDelivery(policy, script([]), { ...hooks, stopped: () => true })).toBe('not_delivered');
  });

  it("waits as long as a receiver's Retry-After asks, never past the backoff cap, and never less than the backoff", async () => {
    expect(delayBeforeRetryMs(policy, 1, undefined, () => 1)).toBe(100);
    expect(delayBeforeRetryMs(policy, 1, 700, () => 1)).toBe(700);
    expect(delayBeforeRetryMs(policy, 1, 3_600_000, () => 1)).toBe(1_000);
    expect(delayBeforeRetryMs(policy, 4, 10, () => 1)).toBe(800);
    const waits: number[] = [];
    const hooks = { sleep: async (ms: number) => void waits.push(ms), stopped: () => false, random: () => 1 };
    const steps: DeliveryStep[] = [
      { status: 'undelivered', retryable: true, attempts: 1, error: 'receiver answered 429', retryAfterMs: 600 },
      { status: 'undelivered', retryable: true, attempts: 2, error: 'receiver answered 503', retryAfterMs: 86_400_000 },
      { status: 'delivered' },
    ];
    expect(await retryDelivery(policy, async () => steps.shift()!, hooks)).toBe('delivered');
    expect(waits).toEqual([600, 1_000]);
  });
});
