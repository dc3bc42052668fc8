// The HTTP pipeline sink when its target goes down: no batch fails, and the batch resumes when the target is back.
// 15 s down in the fast pass; a full minute under `npm run test:soak` (BATCHMEM_SOAK=1).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, ndjsonStream } from '../support/api-client.ts';
import { sleep } from '../support/reliability.ts';
import { counter, expectEachMemoryOnce, rig, type Rig } from '../support/http-sink.ts';

const soak = process.env.BATCHMEM_SOAK === '1';

describe('HTTP sink: a target that goes down', () => {
  const downMs = soak ? 60_000 : 15_000;
  let r: Rig;
  beforeAll(async () => {
    r = await rig({ BATCHMEM_SINK_RATE: '1000', BATCHMEM_SEGMENT_MAX_ITEMS: '200' });
  });
  afterAll(async () => r?.close());

  it(`fails no batch while the target is down for ${downMs / 1000} s, and the batch resumes when it is back`, async () => {
    const total = 6000;
    expect((await r.api.submitNdjson(ndjsonStream(total), '?batch_id=target-down')).status).toBe(202);
    await r.api.waitFor('target-down', (b) => b.request_counts.processed >= 1000);
    await r.receiver.setDown(true);
    const downAt = Date.now();
    await sleep(downMs / 2);
    const during = await r.api.get('target-down');
    expect(during.status).toBe('processing');
    expect(during.request_counts.processed).toBeLessThan(total);
    const ready = await fetch(`${r.server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/target/);
    await sleep(downAt + downMs - Date.now());
    expect((await r.api.get('target-down')).status).toBe('processing');
    await r.receiver.setDown(false);
    const done = await r.api.waitForFinal('target-down', 180_000);
    const resumedAfterMs = Date.now() - downAt - downMs;
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    expect(done.status).toBe('completed');
    expectEachMemoryOnce(r.receiver, total);
    expect((await fetch(`${r.server.url}/readyz`)).status).toBe(200);
    const pauses = await counter(r.server.url, 'batchmem_sink_pauses_total', 'reason');
    expect(pauses['breaker']).toBeGreaterThan(0);
    console.info(`[http-sink] target down ${downMs / 1000} s: batch finished ${(resumedAfterMs / 1000).toFixed(1)} s after it came back; pauses ${JSON.stringify(pauses)}`);
  });
});
