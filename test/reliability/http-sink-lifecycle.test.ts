// The HTTP pipeline sink seen from outside the process while its target throttles or fails, with the default
// processing thread (whose delivery thread holds the Retry-After gate and the breaker): /readyz says so, and SIGTERM
// does not wait for the target to come back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjsonStream } from '../support/api-client.ts';
import { sleep } from '../support/reliability.ts';
import { expectEachMemoryOnce, rig, type Rig } from '../support/http-sink.ts';

async function readiness(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${url}/readyz`);
  return { status: response.status, text: await response.text() };
}

describe('HTTP sink: readiness and shutdown while the target refuses', () => {
  let r: Rig;
  beforeAll(async () => {
    r = await rig({ BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SINK_MAX_RETRY_AFTER: '5s' });
  });
  afterAll(async () => r?.close());

  it('is not ready while the target answers 503 with Retry-After (its GET still answering 200), and ready after', async () => {
    r.receiver.setPlan(() => ({ kind: 'answer', status: 503, retryAfter: '3' }));
    expect((await r.api.submitNdjson(ndjsonStream(400, (i) => ({ content: `ready ${i}`, external_id: `ready-${i}` })), '?batch_id=ready')).status).toBe(202);
    const deadline = Date.now() + 10_000;
    while (!r.receiver.arrivals.some((a) => a.status === 503) && Date.now() < deadline) await sleep(50);
    const during = await readiness(r.server.url);
    expect(during.status).toBe(503);
    expect(during.text).toMatch(/paused/);
    r.receiver.setPlan(undefined);
    const done = await r.api.waitForFinal('ready', 60_000);
    expect(done.status).toBe('completed');
    expect((await readiness(r.server.url)).status).toBe(200);
  });

  it('exits within seconds of SIGTERM while the target keeps failing, and the batch completes after a restart', async () => {
    r.receiver.setPlan(() => ({ kind: 'answer', status: 500 }));
    const before = r.receiver.arrivals.length;
    expect((await r.api.submitNdjson(ndjsonStream(600, (i) => ({ content: `stop ${i}`, external_id: `stop-${i}` })), '?batch_id=stop')).status).toBe(202);
    const deadline = Date.now() + 10_000;
    while (r.receiver.arrivals.length === before && Date.now() < deadline) await sleep(50);
    const stoppingAt = Date.now();
    await r.server.stop(); // SIGTERM; SIGKILL after 15 s
    const stopMs = Date.now() - stoppingAt;
    expect(stopMs).toBeLessThan(14_000);
    console.info(`[http-sink] SIGTERM with the target failing: exited after ${(stopMs / 1000).toFixed(1)} s`);
    // The requests ended by the stop say so, rather than reporting a crashed delivery thread.
    expect(r.server.output()).toMatch(/the process is stopping/);
    expect(r.server.output()).not.toMatch(/delivery thread stopped/);
    r.receiver.setPlan(undefined);
    await r.server.start();
    const done = await r.api.waitForFinal('stop', 60_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts.succeeded).toBe(600);
    expectEachMemoryOnce(r.receiver, 400 + 600);
  });
});
