// The MemorySink contract: the executable form of the guarantees in src/ports/memory-sink.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';
import { tenantA, uniqueId } from '../support/batches.ts';

export interface SinkFixture {
  sink: MemorySink;
  close(): Promise<void>;
}

function records(batchKey: string, from: number, count: number) {
  return Array.from({ length: count }, (_, offset) =>
    toMemoryRecord(batchKey, tenantA, from + offset, {
      content: `memory number ${from + offset}`,
      type: 'note',
      metadata: { n: from + offset, tags: ['a', 'b'] },
      external_id: `ext-${from + offset}`,
    }),
  );
}

export function memorySinkContract(adapter: string, open: () => Promise<SinkFixture>): void {
  describe(`MemorySink contract: ${adapter}`, () => {
    let fixture: SinkFixture;
    let sink: MemorySink;
    beforeAll(async () => {
      fixture = await open();
      sink = fixture.sink;
    });
    afterAll(async () => fixture?.close());

    it('stores a segment and reports one outcome per record, in order', async () => {
      const key = uniqueId('k');
      const batch = records(key, 0, 120);
      const outcomes = await sink.writeSegment(batch);
      expect(outcomes.map((o) => o.index)).toEqual(batch.map((r) => r.index));
      expect(outcomes.every((o) => o.ok)).toBe(true);
      expect(await sink.countByBatch(key)).toBe(120);
    });

    it('stores nothing new when a segment is written again', async () => {
      const key = uniqueId('k');
      const batch = records(key, 0, 60);
      await sink.writeSegment(batch);
      const again = await sink.writeSegment(batch);
      expect(again.every((o) => o.ok && o.memoryId === batch[o.index]!.memoryId)).toBe(true);
      await sink.writeSegment(records(key, 30, 60)); // overlaps half of the first write
      expect(await sink.countByBatch(key)).toBe(90);
    });

    it('keeps the Papr fields of a memory, the batch defaults under its own, and lists them as written', async () => {
      const key = uniqueId('k');
      const defaults = { external_user_id: 'batch-user', memory_policy: { mode: 'auto', consent: 'explicit' } };
      const written = [
        toMemoryRecord(key, tenantA, 0, {
          content: 'with every field',
          context: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'hi' }],
          relationships_json: [{ relation_type: 'follows', related_item_id: 'mem_1', metadata: { weight: 2 } }],
          external_user_id: 'own-user',
          user_id: 'parse-user-1',
          namespace_id: tenantA.namespace,
          organization_id: tenantA.organization,
          graph_generation: { mode: 'manual', manual: { nodes: [{ id: 'n1', label: 'Person', properties: { name: 'Ada' } }] } },
          link_to: ['Task:title', 'Person:email'],
          policy: { graph: { mode: 'auto' } },
        }, defaults),
        toMemoryRecord(key, tenantA, 1, { content: 'defaults only' }, defaults),
        toMemoryRecord(key, tenantA, 2, { content: 'no Papr fields' }),
      ];
      await sink.writeSegment(written);
      const listed = await sink.listByBatch(key, -1, 10);
      expect(listed.map((m) => m.attributes)).toEqual([
        {
          external_user_id: 'own-user',
          memory_policy: { mode: 'auto', consent: 'explicit' },
          context: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'hi' }],
          relationships_json: [{ relation_type: 'follows', related_item_id: 'mem_1', metadata: { weight: 2 } }],
          user_id: 'parse-user-1',
          namespace_id: tenantA.namespace,
          organization_id: tenantA.organization,
          graph_generation: { mode: 'manual', manual: { nodes: [{ id: 'n1', label: 'Person', properties: { name: 'Ada' } }] } },
          link_to: ['Task:title', 'Person:email'],
          policy: { graph: { mode: 'auto' } },
        },
        defaults,
        null,
      ]);
    });

    it('survives concurrent writes of the same segment without duplicates', async () => {
      const key = uniqueId('k');
      const batch = records(key, 0, 80);
      await Promise.all([sink.writeSegment(batch), sink.writeSegment(batch), sink.writeSegment(batch)]);
      expect(await sink.countByBatch(key)).toBe(80);
    });

    it('lists a batch’s memories by index, after a cursor', async () => {
      const key = uniqueId('k');
      await sink.writeSegment(records(key, 50, 50));
      await sink.writeSegment(records(key, 0, 50));
      const page = await sink.listByBatch(key, 9, 5);
      expect(page.map((m) => m.index)).toEqual([10, 11, 12, 13, 14]);
      expect(page[0]).toEqual({ index: 10, memoryId: records(key, 10, 1)[0]!.memoryId, externalId: 'ext-10', attributes: null });
      expect(await sink.listByBatch(uniqueId('k'), -1, 5)).toEqual([]);
    });

    it('answers its readiness check', async () => {
      await expect(sink.check()).resolves.toBeUndefined();
    });
  });
}
