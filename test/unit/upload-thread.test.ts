// The upload thread reads a submit body exactly as the HTTP thread does: the same segments (byte for byte), the same
// count, options and fingerprint, the same refusals and dry-run reports, through the real worker thread. It also
// holds back (a slow store stage stops the reading) and stops reading when asked.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppError, AppFailure } from '../../src/app/errors.ts';
import { inlineBodyReader, type SubmitBodyReader, type SubmitBodySpec } from '../../src/app/http/submit-body.ts';
import { createLogger } from '../../src/app/logger.ts';
import { defaultSettings, type Settings } from '../../src/app/services.ts';
import { UploadThread } from '../../src/app/upload-thread.ts';
import type { InvalidItems } from '../../src/domain/invalid-items.ts';
import { memory } from '../support/api-client.ts';
import { tenantA } from '../support/batches.ts';
import type { Worker } from 'node:worker_threads';

const settings: Settings = { ...defaultSettings, segmentMaxItems: 50 };

/** `text` as a stream of chunks of 1 to 5,000 bytes (a fixed pseudo-random cut, so characters straddle chunks). */
function chunked(bytes: Uint8Array, onPull?: (sent: number) => void, failAt?: number): ReadableStream<Uint8Array> {
  let at = 0;
  let seed = 7;
  return new ReadableStream({
    pull(controller) {
      if (failAt !== undefined && at >= failAt) return controller.error(new Error('the client went away'));
      if (at >= bytes.byteLength) return controller.close();
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const size = 1 + (seed % 5000);
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
      onPull?.(at);
    },
  });
}

const encoder = new TextEncoder();
const ndjson = (count: number, make: (i: number) => unknown = (i) => ({ ...memory(i), content: `${memory(i).content} ✓ 🧠 naïve` })) =>
  encoder.encode(Array.from({ length: count }, (_, i) => JSON.stringify(make(i))).join('\n') + '\n');

function spec(format: 'json' | 'ndjson', early: SubmitBodySpec['early'] = {}, headerSecret?: string): SubmitBodySpec {
  return { format, tenant: tenantA, maxBytes: 64 * 1024 * 1024, maxLineBytes: 2 * 1024 * 1024, memoryLimits: settings.memoryLimits, early, headerSecret };
}

type Outcome =
  | { segments: { firstIndex: number; itemCount: number; rawBytes: number; sha256Hex: string; bodySha: string }[]; read: unknown }
  | { error: AppError }
  | { fault: string };

async function readAll(reader: SubmitBodyReader, body: ReadableStream<Uint8Array>, bodySpec: SubmitBodySpec, mode: InvalidItems | undefined): Promise<Outcome> {
  const segments: Extract<Outcome, { segments: unknown }>['segments'] = [];
  const iterator = reader.segments(body, bodySpec, mode);
  try {
    for (;;) {
      const step = await iterator.next();
      if (step.done) return { segments, read: step.value };
      const { body: stored, sha256Hex } = await step.value.encoded;
      const bodySha = createHash('sha256').update(stored).digest('hex');
      segments.push({ firstIndex: step.value.firstIndex, itemCount: step.value.itemCount, rawBytes: step.value.rawBytes, sha256Hex, bodySha });
    }
  } catch (error) {
    if (error instanceof AppFailure) return { error: error.error };
    return { fault: (error as Error).message };
  }
}

describe('the upload thread', () => {
  let thread: UploadThread;
  const started: Worker[] = [];
  const inline = inlineBodyReader(settings);
  beforeAll(async () => {
    thread = new UploadThread({ settings, logger: createLogger('silent'), started: (worker) => started.push(worker), idleMs: 60_000 });
  });
  afterAll(async () => {
    await thread.close();
  });

  const bodies: { name: string; bytes: () => Uint8Array; spec: SubmitBodySpec; mode: InvalidItems | undefined; failAt?: number; expect: (outcome: Outcome) => void }[] = [
    {
      name: 'an NDJSON body of 1,000 memories with characters across chunks',
      bytes: () => ndjson(1000),
      spec: spec('ndjson', { batchId: 'b1' }),
      mode: 'reject',
      expect: (outcome) => {
        expect('segments' in outcome && outcome.segments).toHaveLength(20);
        expect('read' in outcome && outcome.read).toMatchObject({ itemCount: 1000, options: { batchId: 'b1' }, bodySha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
      },
    },
    {
      name: 'an NDJSON body with an invalid item (reject)',
      bytes: () => ndjson(700, (i) => (i === 600 ? { content: 5 } : memory(i))),
      spec: spec('ndjson'),
      mode: 'reject',
      expect: (outcome) => expect('error' in outcome && outcome.error.detail).toMatch(/^line 601: memory 600 is invalid/),
    },
    {
      name: 'the same body with invalid_items=record',
      bytes: () => ndjson(700, (i) => (i === 600 ? { content: 5 } : memory(i))),
      spec: spec('ndjson', { invalidItems: 'record' }),
      mode: 'record',
      expect: (outcome) => expect('read' in outcome && outcome.read).toMatchObject({ itemCount: 700 }),
    },
    {
      name: 'a JSON body whose options follow its memories',
      bytes: () => encoder.encode(JSON.stringify({ memories: Array.from({ length: 120 }, (_, i) => memory(i)), batch_id: 'j1', metadata: { a: 'b' } })),
      spec: spec('json', { idempotencyKey: 'k' }),
      mode: undefined,
      expect: (outcome) => expect('read' in outcome && outcome.read).toMatchObject({ itemCount: 120, options: { batchId: 'j1', idempotencyKey: 'k', metadata: { a: 'b' } } }),
    },
    {
      name: 'a JSON body whose webhook secret differs from the header',
      bytes: () => encoder.encode(JSON.stringify({ memories: [memory(1)], webhook_url: 'https://example.com/h', webhook_secret: 'a'.repeat(32) })),
      spec: spec('json', {}, 'b'.repeat(32)),
      mode: undefined,
      expect: (outcome) => expect('error' in outcome && outcome.error.detail).toMatch(/Webhook-Secret header and webhook_secret in the JSON body differ/),
    },
    {
      name: 'a body that is not UTF-8',
      bytes: () => new Uint8Array([...encoder.encode('{"content":"caf'), 0xe9, ...encoder.encode('"}\n')]),
      spec: spec('ndjson'),
      mode: 'reject',
      expect: (outcome) => expect('error' in outcome && outcome.error.kind).toBe('unsupported_format'),
    },
    {
      name: 'a body whose client goes away part-way',
      bytes: () => ndjson(1000),
      spec: spec('ndjson'),
      mode: 'reject',
      failAt: 100_000,
      expect: (outcome) => expect('error' in outcome && outcome.error.detail).toBe('the upload ended before the body was complete'),
    },
  ];

  for (const body of bodies) {
    it(`gives what the HTTP thread gives: ${body.name}`, async () => {
      const bytes = body.bytes();
      const fromThread = await readAll(thread, chunked(bytes, undefined, body.failAt), body.spec, body.mode);
      const fromInline = await readAll(inline, chunked(bytes, undefined, body.failAt), body.spec, body.mode);
      body.expect(fromThread);
      expect(fromThread).toEqual(fromInline);
      if (body.failAt === undefined) {
        const report = await thread.validate(chunked(bytes), body.spec).catch((error: AppFailure) => error.error);
        expect(report).toEqual(await inline.validate(chunked(bytes), body.spec).catch((error: AppFailure) => error.error));
      }
    });
  }

  it('reads no further ahead than a few segments of what the store stage took, and stops reading when asked', async () => {
    const bytes = ndjson(2000);
    let sent = 0;
    let cancelled = false;
    const source = chunked(bytes, (at) => (sent = at));
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const reader = source.getReader();
        const step = await reader.read();
        reader.releaseLock();
        if (step.done) controller.close();
        else controller.enqueue(step.value);
      },
      cancel: () => {
        cancelled = true;
      },
    });
    const iterator = thread.segments(body, spec('ndjson'), 'reject');
    const first = await iterator.next();
    expect(first.done).toBe(false);
    // A store stage that takes its time: the thread fills what it may send ahead, then waits.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(sent).toBeLessThan(bytes.byteLength / 2);
    await iterator.return(undefined as never);
    expect(cancelled).toBe(true);
    // The thread serves the next upload.
    const next = await readAll(thread, chunked(ndjson(60)), spec('ndjson'), 'reject');
    expect('read' in next && next.read).toMatchObject({ itemCount: 60 });
  });

  it('fails the uploads it held when it dies, starts again, and serves the next upload', async () => {
    // A body that sends one line and then waits, as a slow client would.
    const stalled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(ndjson(1));
      },
    });
    const held = readAll(thread, stalled, spec('ndjson'), 'reject');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await started.at(-1)!.terminate();
    expect(await held).toEqual({ fault: expect.stringMatching(/the upload thread stopped/) });
    const next = await readAll(thread, chunked(ndjson(60)), spec('ndjson'), 'reject');
    expect('read' in next && next.read).toMatchObject({ itemCount: 60 });
    expect(started).toHaveLength(2);
  });

  it('starts with the first upload, ends after idleMs without one, and starts again for the next', async () => {
    const workers: Worker[] = [];
    const lazy = new UploadThread({ settings, logger: createLogger('silent'), started: (worker) => workers.push(worker), idleMs: 200 });
    try {
      expect(workers).toHaveLength(0);
      const first = await readAll(lazy, chunked(ndjson(10)), spec('ndjson'), 'reject');
      expect('read' in first && first.read).toMatchObject({ itemCount: 10 });
      expect(workers).toHaveLength(1);
      await new Promise((resolve) => workers[0]!.once('exit', resolve));
      const second = await readAll(lazy, chunked(ndjson(20)), spec('ndjson'), 'reject');
      expect('read' in second && second.read).toMatchObject({ itemCount: 20 });
      expect(workers).toHaveLength(2);
    } finally {
      await lazy.close();
    }
  });
});
