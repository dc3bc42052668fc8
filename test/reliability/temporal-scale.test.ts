// Size on one Temporal dev server: the naive design (memories in the workflow input) is refused at its payload limit
// at some batch size N, while processBatch, whose input is the batch key, completes 100 x N; and a 100,000-memory
// batch cut into 1,000 segments keeps every run's history far under 10,000 events by continuing as new.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryItem } from '../../src/domain/memory.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { workflowIdFor } from '../../src/domain/batch.ts';
import { tenantA } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import type { NaiveActivities, naiveProcessBatch } from '../support/naive-workflows.ts';
import { inputBytes, quietTemporalRuntime, runHistories, settle, submitDirect, temporalFixture } from '../support/temporal.ts';
import { storedCount } from '../support/stored.ts';

let temporal: TemporalBackend;
beforeAll(async () => {
  temporal = await startTemporal();
});
afterAll(stopAllBackends);
printLogsOnFailure(() => [temporal]);

const vocabulary = ('the user asked about the quarterly budget review and agreed to follow up with the design team ' +
  'on the customer onboarding flow before the deadline next week while noting open questions on pricing').split(' ');

/** A document chunk of about 2 KB, as an assistant's memory store would hold (deterministic, compressible text). */
function documentChunk(index: number): MemoryItem {
  let state = (index + 1) * 2654435761 >>> 0;
  const words: string[] = [];
  for (let length = 0; length < 1900; ) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const word = vocabulary[(state >>> 16) % vocabulary.length]!;
    words.push(word);
    length += word.length + 1;
  }
  return { content: `chunk ${index}: ${words.join(' ')}`, type: 'document', metadata: { source: 'notes', chunk: index }, external_id: `doc-${index}` };
}

/** The error and its causes, where the server's reason is. */
function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e && parts.length < 4; e = (e as { cause?: unknown }).cause) {
    const text = `${(e as Error).name}: ${(e as Error).message}`;
    if (!parts.includes(text)) parts.push(text);
  }
  return parts.join(' <- ').slice(0, 400);
}

const mebibyte = 1024 * 1024;
const format = (bytes: number) => (bytes >= mebibyte ? `${(bytes / mebibyte).toFixed(2)} MiB` : `${bytes} B`);

describe('the naive design next to processBatch, on the same Temporal server', () => {
  it('refuses the naive workflow input at some N, and processBatch completes 100 x N with a constant-size input', async () => {
    quietTemporalRuntime();
    const taskQueue = `naive-${randomUUID()}`;
    const fixture = await temporalFixture(temporal, { settings: { segmentConcurrency: 4 } });
    const connection = await NativeConnection.connect({ address: temporal.address });
    const activities: NaiveActivities = {
      async storeMemories({ batchKey, memories }) {
        const records = memories.map((item, index) => toMemoryRecord(batchKey, tenantA, index, item as MemoryItem));
        return (await fixture.services.sink.writeSegment(records)).filter((outcome) => outcome.ok).length;
      },
    };
    const naiveWorker = await Worker.create({
      connection,
      namespace: temporal.namespace,
      taskQueue,
      workflowsPath: fileURLToPath(new URL('../support/naive-workflows.ts', import.meta.url)),
      activities,
    });
    try {
      const client = fixture.client;
      const lines: string[] = [];
      let rejectedAt: number | undefined;
      let rejection = '';
      let largestAccepted = { memories: 0, inputBytes: 0, events: 0, historyBytes: 0 };
      await naiveWorker.runUntil(async () => {
        // About 2 KB a memory: Temporal's 2 MiB payload limit falls between 1,000 and 1,250.
        for (const memories of [250, 500, 1000, 1250, 1500, 2000, 4000, 8000]) {
          if (rejectedAt !== undefined) break;
          const batchKey = randomUUID().replaceAll('-', '');
          const input = { batchKey, memories: Array.from({ length: memories }, (_, i) => documentChunk(i)) };
          const bytes = Buffer.byteLength(JSON.stringify(input));
          const workflowId = `naive-${batchKey}`;
          try {
            const stored = await client.workflow.execute<typeof naiveProcessBatch>('naiveProcessBatch', { taskQueue, workflowId, args: [input] });
            expect(stored).toBe(memories);
            const [run] = await runHistories(client, workflowId);
            largestAccepted = { memories, inputBytes: bytes, events: run!.events, historyBytes: run!.bytes };
            lines.push(`naive         ${memories} memories: input ${format(bytes)}, completed, history ${run!.events} events, ${format(run!.bytes)}`);
          } catch (error) {
            rejectedAt = memories;
            rejection = describeError(error);
            lines.push(`naive         ${memories} memories: input ${format(bytes)}, refused: ${rejection}`);
          }
        }
      });
      expect(rejectedAt, 'the naive design was never refused').toBeDefined();
      expect(rejection).toMatch(/size|limit|exceed|too large|RESOURCE_EXHAUSTED|INVALID_ARGUMENT/i);

      const total = 100 * rejectedAt!;
      const startedAt = Date.now();
      const batch = await submitDirect(fixture.services, total, { make: documentChunk });
      const done = await settle(fixture.services, batch.key, 600_000);
      const seconds = (Date.now() - startedAt) / 1000;
      expect(done.status).toBe('completed');
      expect(done.counts).toEqual({ total, processed: total, succeeded: total, failed: 0 });
      expect(await storedCount(fixture.services.sink, batch.key)).toBe(total);
      const runs = await runHistories(client, workflowIdFor(batch.key));
      const input = Math.max(...runs.map((run) => inputBytes(run).data));
      const longest = runs.reduce((a, b) => (b.events > a.events ? b : a));
      expect(input).toBeLessThanOrEqual(128);
      lines.push(
        `processBatch  ${total} memories (${format(done.payload.rawBytes)} raw, ${format(done.payload.storedBytes)} stored in ` +
          `${done.payload.segments} segments): input ${input} B, completed in ${seconds.toFixed(1)} s, ${runs.length} run(s), ` +
          `longest history ${longest.events} events, ${format(longest.bytes)}`,
      );
      lines.push(`largest naive batch that completed: ${largestAccepted.memories} memories; processBatch completed ${total / largestAccepted.memories}x that`);
      console.log(`[temporal] naive design vs processBatch on one server:\n  ${lines.join('\n  ')}`);
    } finally {
      await connection.close();
      await fixture.close();
    }
  });
});

describe('history length of a 100,000-memory batch', () => {
  it('keeps the longest run under 10,000 events by continuing as new', async () => {
    const total = 100_000;
    const segmentsPerRun = 500;
    // Segments of 100 memories give 1,000 segments: enough that one run holding them all would pass 5,000 events.
    const fixture = await temporalFixture(temporal, { settings: { segmentMaxItems: 100, segmentConcurrency: 8 }, segmentsPerRun });
    try {
      const startedAt = Date.now();
      const batch = await submitDirect(fixture.services, total);
      const done = await settle(fixture.services, batch.key, 600_000);
      const seconds = (Date.now() - startedAt) / 1000;
      expect(done.status).toBe('completed');
      expect(done.counts).toEqual({ total, processed: total, succeeded: total, failed: 0 });
      expect(await storedCount(fixture.services.sink, batch.key)).toBe(total);
      const runs = await runHistories(fixture.client, workflowIdFor(batch.key));
      const longest = Math.max(...runs.map((run) => run.events));
      expect(runs).toHaveLength(Math.ceil(done.payload.segments / segmentsPerRun));
      expect(longest).toBeLessThan(10_000);
      const perSegment = runs[0]!.events / Math.min(segmentsPerRun, done.payload.segments);
      console.log(
        `[temporal] ${total} memories in ${done.payload.segments} segments, ${segmentsPerRun} per run: ${runs.length} runs of ` +
          `${runs.map((run) => run.events).join(' / ')} events (longest ${longest}; ${format(Math.max(...runs.map((r) => r.bytes)))}); ` +
          `one run without continue-as-new would hold about ${Math.round(perSegment * done.payload.segments)} events; ` +
          `completed in ${seconds.toFixed(1)} s`,
      );
    } finally {
      await fixture.close();
    }
  });
});
