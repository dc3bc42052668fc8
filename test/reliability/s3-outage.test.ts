// The S3 payload store rides out a store that goes away for a while: requests in flight when it stops wait for it
// to come back (within the adapter's outage tolerance) instead of failing the segment they belong to.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3PayloadStore } from '../../src/adapters/s3/payload-store.ts';
import { printLogsOnFailure, startS3, stopAllBackends, type S3Backend } from '../support/containers.ts';
import { requireDocker } from '../support/docker.ts';

const info = (body: Uint8Array) => ({
  sha256Hex: createHash('sha256').update(body).digest('hex'),
  contentType: 'application/x-ndjson',
  contentEncoding: 'zstd',
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('S3 payload store during a store outage', () => {
  let s3: S3Backend;
  let store: S3PayloadStore;
  beforeAll(async () => {
    s3 = await startS3();
    store = new S3PayloadStore({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      bucket: `outage-${randomUUID()}`,
      outageToleranceMs: 30_000,
    });
    await store.ensureBucket();
  });
  afterAll(async () => {
    await store?.close();
    await stopAllBackends();
  });
  printLogsOnFailure(() => [s3]);

  /** Stops the container (its port answers nothing), waits, starts it again on the same port and volume. */
  async function outage(downMs: number): Promise<void> {
    const docker = (await requireDocker()).container.dockerode.getContainer(s3.container.getId());
    await docker.stop({ t: 0 });
    await sleep(downMs);
    await docker.start();
  }

  it('finishes reads and writes that were sent while the store was stopped for 5 seconds', async () => {
    const stored = Array.from({ length: 24 }, (_, i) => ({ key: `org-a/outage/segment-${String(i + 1).padStart(6, '0')}.zst`, body: randomBytes(20_000) }));
    for (const { key, body } of stored) await store.put(key, body, info(body));

    const down = outage(5_000);
    await sleep(300);
    const startedAt = performance.now();
    const fresh = Array.from({ length: 24 }, (_, i) => ({ key: `org-a/outage/late-${i}.zst`, body: randomBytes(20_000) }));
    const [reads] = await Promise.all([
      Promise.all(stored.map(({ key }) => store.get(key))),
      Promise.all(fresh.map(({ key, body }) => store.put(key, body, info(body)))),
      down,
    ]);
    const elapsedMs = performance.now() - startedAt;
    console.info(`[s3-outage] 48 requests sent into a 5 s outage all finished after ${Math.round(elapsedMs)} ms`);

    reads.forEach((bytes, i) => expect(Buffer.from(bytes!).equals(stored[i]!.body)).toBe(true));
    for (const { key, body } of fresh) expect(Buffer.from((await store.get(key))!).equals(body)).toBe(true);
    await expect(store.check()).resolves.toBeUndefined();
  });

  it('answers its readiness check with the reason while the store is down, and recovers', async () => {
    const docker = (await requireDocker()).container.dockerode.getContainer(s3.container.getId());
    await docker.stop({ t: 0 });
    try {
      await expect(store.check()).rejects.toThrow(/is not reachable/);
    } finally {
      await docker.start();
    }
    await expect.poll(() => store.check().then(() => 'ready', () => 'down'), { timeout: 20_000, interval: 200 }).toBe('ready');
  });

  it('gives up once the outage outlasts its tolerance', async () => {
    const impatient = new S3PayloadStore({
      endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, bucket: 'any',
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, outageToleranceMs: 2_000,
    });
    const docker = (await requireDocker()).container.dockerode.getContainer(s3.container.getId());
    await docker.stop({ t: 0 });
    const startedAt = performance.now();
    try {
      await expect(impatient.get('org-a/none/segment-000001.zst')).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);
      const elapsedMs = performance.now() - startedAt;
      // Backoff from 100 ms with equal jitter: the first three retries wait at least 100 + 200 + 400 ms and at most
      // 1,400 ms in all, so they always fit the 2 s tolerance; the fourth may not (that is where it gives up).
      expect(elapsedMs).toBeGreaterThanOrEqual(700);
      expect(elapsedMs).toBeLessThan(5_000);
    } finally {
      await docker.start();
      await impatient.close();
    }
  });
});
