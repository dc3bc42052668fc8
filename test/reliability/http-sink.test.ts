// The HTTP pipeline sink under a hostile target, through the real server process: 20,000 memories to a loopback
// NDJSON receiver that answers 429 with Retry-After (seconds or an HTTP date) in bursts, 503 for 10 s, slow answers
// past the timeout, resets connections and refuses a fixed set of items. The batch completes with exact counts and every
// memory arrives once as a logical event. The target that goes down is in http-sink-outage.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, memory, ndjsonStream } from '../support/api-client.ts';
import { counter, expectEachMemoryOnce, refuseMarker, rig, type Rig } from '../support/http-sink.ts';
import { expectNoSecrets } from '../support/reliability.ts';
import type { Fault } from '../support/sink-receiver.ts';

const ratePerSecond = 2000;

describe('HTTP sink: 20,000 memories to a receiver that throttles, fails, stalls, resets and refuses', () => {
  let r: Rig;
  beforeAll(async () => {
    r = await rig({ BATCHMEM_SINK_RATE: String(ratePerSecond) });
  });
  afterAll(async () => r?.close());

  it('completes with exact counts, each memory once, the refused ones in /errors, Retry-After and the rate respected', async () => {
    const total = 20_000;
    const refusedIndexes = Array.from({ length: 20 }, (_, i) => i * 1000 + 500);
    let firstAtMs: number | undefined;
    let burstLeft = 0;
    let bursts = 0;
    r.receiver.setPlan(({ seq }): Fault => {
      firstAtMs ??= Date.now();
      const elapsedMs = Date.now() - firstAtMs;
      if (elapsedMs >= 5000 && elapsedMs < 15_000) return { kind: 'answer', status: 503 };
      // Every 250th request starts a burst: it and the next five are throttled, every other burst with an HTTP date.
      if (seq % 250 === 0) {
        burstLeft = 6;
        bursts += 1;
      }
      if (burstLeft > 0) {
        burstLeft -= 1;
        const retryAfter = bursts % 2 === 0 ? new Date(Date.now() + 2000).toUTCString() : '1';
        return { kind: 'answer', status: 429, retryAfter };
      }
      if (seq % 37 === 0) return { kind: 'slow', delayMs: 1500 };
      if (seq % 41 === 0) return { kind: 'reset' };
      return undefined;
    });
    const make = (i: number) => (refusedIndexes.includes(i) ? { ...memory(i), content: `${refuseMarker} ${i}` } : memory(i));
    const startedAt = Date.now();
    expect((await r.api.submitNdjson(ndjsonStream(total, make), '?batch_id=hostile-target')).status).toBe(202);
    const done = await r.api.waitForFinal('hostile-target', 300_000);
    const seconds = (Date.now() - startedAt) / 1000;

    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total - 20, failed: 20, expired: 0 });
    expectEachMemoryOnce(r.receiver, total - 20);

    const errors = await r.api.all<{ index: number; error: string }>('/v1/batch/hostile-target/errors');
    expect(errors.map((e) => e.index)).toEqual(refusedIndexes);
    expect(errors.every((e) => /^target answered 400: memory mem_\w+ holds forbidden content$/.test(e.error))).toBe(true);

    const results = await r.api.all<{ index: number; status: string; memory_id?: string; sink_id?: string }>('/v1/batch/hostile-target/results');
    expect(results.length).toBe(total);
    const succeeded = results.filter((item) => item.status === 'succeeded');
    expect(succeeded.every((item) => item.sink_id === r.receiver.stored.get(item.memory_id!)?.sinkId)).toBe(true);
    const file = (await (await r.api.request('/v1/batch/hostile-target/results.ndjson')).text()).trim().split('\n');
    const lines = file.map((line) => JSON.parse(line) as { outcome: string; memory_id: string | null; sink_id?: string });
    expect(lines.length).toBe(total);
    expect(lines.filter((l) => l.outcome === 'succeeded').every((l) => l.sink_id === r.receiver.stored.get(l.memory_id!)?.sinkId)).toBe(true);

    // Requests already in flight when a 429 was answered may still arrive; nothing sent after the answer may.
    expect(r.receiver.requestsInsideWindows(250)).toEqual([]);
    const peak = r.receiver.maxMemoriesPerSecond();
    expect(peak).toBeLessThanOrEqual(ratePerSecond);

    const statuses = await counter(r.server.url, 'batchmem_sink_requests_total', 'status');
    const retries = await counter(r.server.url, 'batchmem_sink_retries_total', 'reason');
    const pauses = await counter(r.server.url, 'batchmem_sink_pauses_total', 'reason');
    expect(statuses['429']).toBeGreaterThanOrEqual(24);
    expect(statuses['503']).toBeGreaterThan(0);
    expect(statuses['timeout']).toBeGreaterThan(0);
    expect(statuses['network']).toBeGreaterThan(0);
    expect(pauses['retry_after']).toBeGreaterThan(0);
    expect(pauses['breaker']).toBeGreaterThan(0);
    console.info(
      `[http-sink] ${total} memories in ${seconds.toFixed(1)} s; ${r.receiver.arrivals.length} requests, ` +
        `${r.receiver.acceptedKeys.size} accepted keys, peak ${peak} memories/s (limit ${ratePerSecond}), ` +
        `${r.receiver.windows.length} Retry-After answers; requests ${JSON.stringify(statuses)}; retries ${JSON.stringify(retries)}; pauses ${JSON.stringify(pauses)}`,
    );
    expectNoSecrets(r.server.output(), r.secrets);
    expectNoSecrets(await (await fetch(`${r.server.url}/metrics`)).text(), r.secrets);
  });
});
