// The PayloadStore contract: the executable form of the guarantees in src/ports/payload-store.ts.
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PayloadConflictError, type PayloadStore } from '../../src/ports/payload-store.ts';
import { uniqueId } from '../support/batches.ts';

export interface PayloadFixture {
  store: PayloadStore;
  /** Flips one byte of a stored object behind the adapter's back, to prove checksums are verified. */
  corrupt?(key: string): Promise<void>;
  close(): Promise<void>;
}

const info = (body: Uint8Array) => ({
  sha256Hex: createHash('sha256').update(body).digest('hex'),
  contentType: 'application/x-ndjson',
  contentEncoding: 'zstd',
});

export function payloadStoreContract(adapter: string, open: () => Promise<PayloadFixture>): void {
  describe(`PayloadStore contract: ${adapter}`, () => {
    let fixture: PayloadFixture;
    let store: PayloadStore;
    beforeAll(async () => {
      fixture = await open();
      store = fixture.store;
    });
    afterAll(async () => fixture?.close());

    const prefix = () => `org-a/${uniqueId()}`;

    it('returns exactly the bytes it stored', async () => {
      const key = `${prefix()}/segment-000001.zst`;
      const body = randomBytes(300_000);
      await store.put(key, body, info(body));
      expect(Buffer.from((await store.get(key))!).equals(body)).toBe(true);
    });

    it('answers undefined for a key that does not exist', async () => {
      expect(await store.get(`${prefix()}/segment-000001.zst`)).toBeUndefined();
    });

    it('accepts a retried write of identical bytes', async () => {
      const key = `${prefix()}/segment-000001.zst`;
      const body = randomBytes(1000);
      await store.put(key, body, info(body));
      await expect(store.put(key, body, info(body))).resolves.toBeUndefined();
    });

    it('refuses different bytes under an existing key and keeps the first', async () => {
      const key = `${prefix()}/segment-000001.zst`;
      const first = randomBytes(1000);
      const second = randomBytes(1000);
      await store.put(key, first, info(first));
      await expect(store.put(key, second, info(second))).rejects.toBeInstanceOf(PayloadConflictError);
      expect(Buffer.from((await store.get(key))!).equals(first)).toBe(true);
    });

    it('deletes every object under a prefix and nothing else', async () => {
      const doomed = prefix();
      const kept = prefix();
      for (let i = 1; i <= 3; i += 1) {
        const body = randomBytes(100);
        await store.put(`${doomed}/segment-00000${i}.zst`, body, info(body));
      }
      const keptBody = randomBytes(100);
      await store.put(`${kept}/segment-000001.zst`, keptBody, info(keptBody));
      expect(await store.deletePrefix(doomed)).toBe(3);
      expect(await store.get(`${doomed}/segment-000002.zst`)).toBeUndefined();
      expect(await store.get(`${kept}/segment-000001.zst`)).toBeDefined();
      expect(await store.deletePrefix(prefix())).toBe(0);
    });

    /** The folders the store lists whose prefix is among `prefixes`, by prefix. */
    const listed = async (prefixes: string[]) => {
      const found = new Map<string, Date[]>();
      for await (const folder of store.folders()) {
        if (prefixes.includes(folder.prefix)) found.set(folder.prefix, [...(found.get(folder.prefix) ?? []), folder.lastWrittenAt]);
      }
      return found;
    };

    it('lists each folder that holds objects once, with the time of its latest write', async () => {
      const first = prefix();
      const second = prefix();
      // Another folder whose name begins like the first one's must stay a folder of its own.
      const lookalike = `${first}-b`;
      const before = Date.now();
      for (const [folder, count] of [[first, 3], [second, 1], [lookalike, 2]] as const) {
        for (let i = 1; i <= count; i += 1) {
          const body = randomBytes(100);
          await store.put(`${folder}/segment-00000${i}.zst`, body, info(body));
        }
      }
      const found = await listed([first, second, lookalike]);
      expect([...found.keys()].sort()).toEqual([first, second, lookalike].sort());
      for (const times of found.values()) {
        expect(times).toHaveLength(1);
        // By the store's clock, which may differ a little from ours (and truncate to whole seconds, as S3 does).
        expect(times[0]!.getTime()).toBeGreaterThan(before - 60_000);
        expect(times[0]!.getTime()).toBeLessThan(Date.now() + 60_000);
      }
    });

    it('moves a folder\'s time on with each write into it', async () => {
      const folder = prefix();
      const body = randomBytes(100);
      await store.put(`${folder}/segment-000001.zst`, body, info(body));
      const firstTime = (await listed([folder])).get(folder)![0]!;
      // Past a whole second, for stores whose times have that resolution.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await store.put(`${folder}/segment-000002.zst`, body, info(body));
      const secondTime = (await listed([folder])).get(folder)![0]!;
      expect(secondTime.getTime()).toBeGreaterThan(firstTime.getTime());
    });

    it('no longer lists a deleted folder, and tolerates deletes while it lists', async () => {
      const folders = [prefix(), prefix(), prefix()];
      for (const folder of folders) {
        const body = randomBytes(100);
        await store.put(`${folder}/segment-000001.zst`, body, info(body));
        await store.put(`${folder}/segment-000002.zst`, body, info(body));
      }
      const seen: string[] = [];
      for await (const folder of store.folders()) {
        if (!folders.includes(folder.prefix)) continue;
        seen.push(folder.prefix);
        expect(await store.deletePrefix(folder.prefix)).toBe(2);
      }
      expect(seen.sort()).toEqual([...folders].sort());
      expect((await listed(folders)).size).toBe(0);
    });

    it('detects a stored object whose bytes changed', async (context) => {
      if (!fixture.corrupt) return context.skip('this adapter cannot be corrupted from outside');
      const key = `${prefix()}/segment-000001.zst`;
      const body = randomBytes(5000);
      await store.put(key, body, info(body));
      await fixture.corrupt(key);
      await expect(store.get(key)).rejects.toThrow(/checksum/i);
    });

    it('prepares for migrate any number of times', async () => {
      const first = await store.prepare();
      expect(await store.prepare()).toEqual(first === undefined ? undefined : expect.any(String));
    });

    it('answers its readiness check', async () => {
      await expect(store.check()).resolves.toBeUndefined();
    });
  });
}
