// The MemorySink contract: the executable form of the guarantees in src/ports/memory-sink.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/domain/batch.ts';
import { type OnExisting, toMemoryRecord } from '../../src/domain/memory.ts';
import type { MemorySink } from '../../src/ports/memory-sink.ts';
import { tenantA, tenantB, uniqueId } from '../support/batches.ts';
import { storedCount } from '../support/stored.ts';

export interface SinkFixture {
  sink: MemorySink;
  close(): Promise<void>;
}

/** External ids are unique per batch key here: a sink upserts by external id across batches of one tenant. */
function records(batchKey: string, from: number, count: number) {
  return Array.from({ length: count }, (_, offset) =>
    toMemoryRecord(batchKey, tenantA, from + offset, {
      content: `memory number ${from + offset}`,
      type: 'note',
      metadata: { n: from + offset, tags: ['a', 'b'] },
      external_id: `${batchKey}-ext-${from + offset}`,
    }),
  );
}

/** Items of a batch naming external ids of a shared set (`ids`), with a content version. */
function upserts(batchKey: string, ids: string[], options: { version?: number; onExisting?: OnExisting; tenant?: Tenant } = {}) {
  return ids.map((id, index) =>
    toMemoryRecord(
      batchKey,
      options.tenant ?? tenantA,
      index,
      { content: `memory ${id}, version ${options.version ?? 1}`, metadata: { id, tags: ['x'] }, external_id: id },
      null,
      options.onExisting,
    ),
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
      expect(await storedCount(sink, key)).toBe(120);
    });

    it('stores nothing new when a segment is written again', async () => {
      const key = uniqueId('k');
      const batch = records(key, 0, 60);
      await sink.writeSegment(batch);
      const again = await sink.writeSegment(batch);
      expect(again.every((o) => o.ok && o.memoryId === batch[o.index]!.memoryId)).toBe(true);
      await sink.writeSegment(records(key, 30, 60)); // overlaps half of the first write
      expect(await storedCount(sink, key)).toBe(90);
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
      expect(await storedCount(sink, key)).toBe(80);
    });

    it('lists a batch’s memories by index, after a cursor', async () => {
      const key = uniqueId('k');
      await sink.writeSegment(records(key, 50, 50));
      await sink.writeSegment(records(key, 0, 50));
      const page = await sink.listByBatch(key, 9, 5);
      expect(page.map((m) => m.index)).toEqual([10, 11, 12, 13, 14]);
      // A forwarding sink adds the target's id for the memory (checked in its own tests).
      const { sinkId: _sinkId, ...first } = page[0]!;
      expect(first).toEqual({
        index: 10,
        memoryId: records(key, 10, 1)[0]!.memoryId,
        externalId: `${key}-ext-10`,
        outcome: 'created',
        version: 1,
        attributes: null,
      });
      expect(await sink.listByBatch(uniqueId('k'), -1, 5)).toEqual([]);
    });

    it('answers its readiness check', async () => {
      await expect(sink.check()).resolves.toBeUndefined();
    });
  });
  memorySinkUpsertContract(adapter, open);
}

/** Upsert by external id across batches (src/ports/memory-sink.ts), part of the contract of every sink. */
function memorySinkUpsertContract(adapter: string, open: () => Promise<SinkFixture>): void {
  describe(`MemorySink upsert contract: ${adapter}`, () => {
    let fixture: SinkFixture;
    let sink: MemorySink;
    beforeAll(async () => {
      fixture = await open();
      sink = fixture.sink;
    });
    afterAll(async () => fixture?.close());

    const ids = (count: number) => {
      const prefix = uniqueId('x');
      return Array.from({ length: count }, (_, n) => `${prefix}-${n}`);
    };
    const outcomesOf = (outcomes: Awaited<ReturnType<MemorySink['writeSegment']>>) => outcomes.map((o) => (o.ok ? o.outcome : 'failed'));

    it('creates new external ids, keeps unchanged ones and updates changed ones under the same memory id', async () => {
      const shared = ids(6);
      const first = await sink.writeSegment(upserts(uniqueId('k'), shared));
      expect(outcomesOf(first)).toEqual(Array(6).fill('created'));
      const again = await sink.writeSegment(upserts(uniqueId('k'), shared));
      expect(outcomesOf(again)).toEqual(Array(6).fill('unchanged'));
      expect(again.map((o) => o.ok && o.memoryId)).toEqual(first.map((o) => o.ok && o.memoryId));
      const changedKey = uniqueId('k');
      const changed = upserts(changedKey, shared).map((record, at) => (at % 2 === 0 ? upserts(changedKey, shared, { version: 2 })[at]! : record));
      const third = await sink.writeSegment(changed);
      expect(outcomesOf(third)).toEqual(['updated', 'unchanged', 'updated', 'unchanged', 'updated', 'unchanged']);
      expect(third.map((o) => o.ok && o.memoryId)).toEqual(first.map((o) => o.ok && o.memoryId));
      const listed = await sink.listByBatch(changedKey, -1, 10);
      expect(listed.map((m) => [m.outcome, m.version])).toEqual([
        ['updated', 2], ['unchanged', 1], ['updated', 2], ['unchanged', 1], ['updated', 2], ['unchanged', 1],
      ]);
      expect(await sink.countOutcomes(changedKey)).toEqual({ created: 0, updated: 3, unchanged: 3 });
    });

    it('leaves a changed memory as it is with on_existing skip', async () => {
      const shared = ids(3);
      const first = await sink.writeSegment(upserts(uniqueId('k'), shared));
      const key = uniqueId('k');
      const skipped = await sink.writeSegment(upserts(key, shared, { version: 2, onExisting: 'skip' }));
      expect(outcomesOf(skipped)).toEqual(['unchanged', 'unchanged', 'unchanged']);
      expect(skipped.map((o) => o.ok && o.memoryId)).toEqual(first.map((o) => o.ok && o.memoryId));
      expect((await sink.listByBatch(key, -1, 10)).map((m) => m.version)).toEqual([1, 1, 1]);
    });

    it('treats metadata with its keys in another order as unchanged', async () => {
      const [id] = ids(1);
      const write = (key: string, metadata: Record<string, unknown>) =>
        sink.writeSegment([toMemoryRecord(key, tenantA, 0, { content: 'same', metadata, external_id: id })]);
      await write(uniqueId('k'), { a: 1, b: { c: 2, d: 3 } });
      expect(outcomesOf(await write(uniqueId('k'), { b: { d: 3, c: 2 }, a: 1 }))).toEqual(['unchanged']);
    });

    it('scopes external ids to the tenant', async () => {
      const shared = ids(2);
      const ours = await sink.writeSegment(upserts(uniqueId('k'), shared));
      const theirs = await sink.writeSegment(upserts(uniqueId('k'), shared, { tenant: tenantB }));
      expect(outcomesOf(theirs)).toEqual(['created', 'created']);
      expect(theirs[0]!.ok && theirs[0]!.memoryId).not.toBe(ours[0]!.ok && ours[0]!.memoryId);
    });

    it('reports the first outcome again when a segment is written again', async () => {
      const shared = ids(4);
      await sink.writeSegment(upserts(uniqueId('k'), shared));
      const key = uniqueId('k');
      const batch = upserts(key, shared, { version: 2 });
      const first = await sink.writeSegment(batch);
      const again = await sink.writeSegment(batch);
      expect(outcomesOf(first)).toEqual(Array(4).fill('updated'));
      expect(again).toEqual(first);
      expect((await sink.listByBatch(key, -1, 10)).map((m) => m.version)).toEqual([2, 2, 2, 2]);
    });

    it('ends concurrent batches writing the same external ids with one memory per id and a consistent version', async () => {
      const shared = ids(60);
      const writers = await Promise.all(
        [1, 2, 3, 4].map((version) => {
          const key = uniqueId('k');
          return sink.writeSegment(upserts(key, shared, { version })).then((outcomes) => ({ key, outcomes }));
        }),
      );
      for (let at = 0; at < shared.length; at += 1) {
        const memoryIds = new Set(writers.map((w) => { const o = w.outcomes[at]!; return o.ok ? o.memoryId : 'failed'; }));
        expect(memoryIds.size).toBe(1);
        const outcomes = writers.map((w) => { const o = w.outcomes[at]!; return o.ok ? o.outcome : 'failed'; });
        expect(outcomes.filter((o) => o === 'created')).toHaveLength(1);
        expect(outcomes.filter((o) => o === 'failed')).toHaveLength(0);
        // The version counts the updates applied: one for each writer that reported `updated`.
        const updates = outcomes.filter((o) => o === 'updated').length;
        const versions = await Promise.all(writers.map(async (w) => (await sink.listByBatch(w.key, at - 1, 1))[0]!.version));
        expect(new Set(versions)).toEqual(new Set([1 + updates]));
      }
    });
  });
}
