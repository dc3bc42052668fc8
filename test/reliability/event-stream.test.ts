// The progress stream across disconnects: a client that drops the connection five times while a 100,000-memory
// batch runs, and reconnects each time with Last-Event-ID, sees progress that only moves forward, never an event it
// already had, and exactly one final event. A quiet stream carries a comment at least every 20 s. A stop (SIGTERM)
// ends open streams at once instead of waiting for their batches.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { apiClient, type ApiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { gate, heldBody, waitForStreamed } from '../support/streamed-upload.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const total = 100_000;
const disconnects = 5;

interface Seen {
  id: number;
  event: string;
  status: string;
  processed: number;
  succeeded: number;
  /** created + updated + unchanged */
  written: number;
  connection: number;
}

/**
 * Opens the stream (with Last-Event-ID when given) and reads events until `stopAfter` of them arrived (then drops the
 * connection) or the stream ends. Returns the status and the events.
 */
async function connect(api: ApiClient, id: string, lastEventId: number | undefined, stopAfter: number, connection: number) {
  const controller = new AbortController();
  const response = await api.request(`/v1/batch/${id}/events`, {
    headers: lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) },
    signal: controller.signal,
  });
  const events: Seen[] = [];
  if (response.status !== 200) return { status: response.status, events, ended: true, headers: response.headers };
  const parser = createParser({
    onEvent: (message: EventSourceMessage) => {
      const batch = JSON.parse(message.data) as { status: string; request_counts: { processed: number; succeeded: number; created: number; updated: number; unchanged: number } };
      const { processed, succeeded, created, updated, unchanged } = batch.request_counts;
      events.push({ id: Number(message.id), event: message.event ?? 'message', status: batch.status, processed, succeeded, written: created + updated + unchanged, connection });
    },
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let ended = false;
  try {
    while (events.length < stopAfter) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    if (!ended) controller.abort();
  }
  return { status: response.status, events, ended, headers: response.headers };
}

describe('progress stream resumed across disconnects', () => {
  const keys = testKeys();
  const dir = tempDir();
  const stalledDir = tempDir();
  let server: ServerProcess;
  let stalled: ServerProcess;
  let api: ApiClient;

  beforeAll(async () => {
    // Small segments so that progress moves in many steps while the client comes and goes.
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_SEGMENT_MAX_ITEMS: '500', BATCHMEM_SEGMENT_CONCURRENCY: '2' });
    await server.start();
    api = apiClient(server.url, keys[0]!.key);
  });
  afterAll(async () => {
    await server?.stop();
    await stalled?.kill();
    dir.remove();
    stalledDir.remove();
  });

  it(`five disconnects during a ${total.toLocaleString('en')}-memory batch: monotonic progress, no replay, one final event`, async () => {
    const id = 'resumed-stream';
    const response = await api.submitNdjson(ndjsonStream(total, (i) => memory(i)), `?batch_id=${id}`);
    expect(response.status).toBe(202);

    const seen: Seen[] = [];
    let lastEventId: number | undefined;
    let droppedWhileRunning = 0;
    for (let connection = 1; ; connection += 1) {
      // The first connections take a couple of events and drop; the last one reads to the end.
      const dropping = droppedWhileRunning < disconnects;
      const result = await connect(api, id, lastEventId, dropping ? 2 : Number.POSITIVE_INFINITY, connection);
      if (result.status === 204) break;
      expect(result.status).toBe(200);
      expect(result.headers.get('x-accel-buffering')).toBe('no');
      seen.push(...result.events);
      if (result.events.length > 0) lastEventId = result.events.at(-1)!.id;
      if (!result.ended && result.events.at(-1)?.event !== 'done') droppedWhileRunning += 1;
      if (result.events.some((e) => e.event === 'done')) {
        // The client still reconnects once more with the final id, as an EventSource would: nothing new, 204.
        const after = await connect(api, id, lastEventId, Number.POSITIVE_INFINITY, connection + 1);
        expect(after.status).toBe(204);
        break;
      }
      expect(connection).toBeLessThan(200);
    }

    console.info(`[event stream] ${seen.length} events over ${new Set(seen.map((e) => e.connection)).size} connections, ${droppedWhileRunning} dropped while the batch ran`);
    expect(droppedWhileRunning).toBe(disconnects);
    // Dropped while the batch still ran: the last event before each drop was not final.
    const ids = seen.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < seen.length; i += 1) {
      expect(seen[i]!.id, `event ${i}`).toBeGreaterThan(seen[i - 1]!.id);
      expect(seen[i]!.processed).toBeGreaterThanOrEqual(seen[i - 1]!.processed);
    }
    // Each event's write outcomes add up to its succeeded count, though the batch runs on another thread.
    expect(seen.filter((e) => e.written !== e.succeeded)).toEqual([]);
    const finals = seen.filter((e) => e.event === 'done');
    expect(finals).toHaveLength(1);
    expect(seen.at(-1)!.event).toBe('done');
    expect(seen.at(-1)).toMatchObject({ status: 'completed', processed: total });
    expect(seen.slice(0, -1).every((e) => e.event === 'progress' && e.status !== 'completed')).toBe(true);
    // Several connections saw the batch in progress: the disconnects happened while it ran.
    expect(new Set(seen.filter((e) => e.event === 'progress').map((e) => e.connection)).size).toBeGreaterThanOrEqual(disconnects);
  });

  it('sends a comment line at least every 20 s on a stream whose batch does not move', async () => {
    // A sink that never answers: the batch stays processing with no change to report.
    stalled = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: stalledDir.path, BATCHMEM_FAULT_SINK_STALL_AFTER: '0' });
    await stalled.start();
    const stalledApi = apiClient(stalled.url, keys[0]!.key);
    expect((await stalledApi.submitJson({ memories: [memory(1)], batch_id: 'quiet' })).status).toBe(202);
    const response = await stalledApi.request('/v1/batch/quiet/events');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    const openedAt = Date.now();
    const comments: number[] = [];
    let text = '';
    const watchMs = 35_000;
    const timer = setTimeout(() => void reader.cancel(), watchMs);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n')) {
          if (text.startsWith(':')) comments.push(Date.now() - openedAt);
          text = text.slice(at + 1);
        }
      }
    } finally {
      clearTimeout(timer);
    }
    console.info(`[event stream] comments at ${comments.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')} over ${watchMs / 1000} s`);
    expect(comments.length).toBeGreaterThanOrEqual(2);
    const gaps = [comments[0]!, ...comments.slice(1).map((at, i) => at - comments[i]!), watchMs - comments.at(-1)!];
    expect(Math.max(...gaps)).toBeLessThanOrEqual(20_000);
  });

  it('SIGTERM ends an open stream at once, answers the upload in flight, and exits while the watched batch still runs', async () => {
    // The marked memory's write is held for as long as the process runs (test/support/faults): the batch cannot
    // finish before the stop, so a stop that waited for the stream would never end on its own.
    const heldDir = tempDir();
    const holdMarker = 'keep this batch running';
    const held = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: heldDir.path, BATCHMEM_FAULT_HOLD_MARKER: holdMarker });
    try {
      await held.start();
      const heldApi = apiClient(held.url, keys[0]!.key);
      expect((await heldApi.submitJson({ memories: [memory(1), { content: `two ${holdMarker}` }], batch_id: 'held' })).status).toBe(202);
      const response = await heldApi.request('/v1/batch/held/events');
      expect(response.status).toBe(200);
      const events: string[] = [];
      const parser = createParser({ onEvent: (message) => events.push(`${message.event}:${(JSON.parse(message.data) as { status: string }).status}`) });
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      // Read until the stream ends; `ended` is false when the connection broke instead of ending.
      const read = (async () => {
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return true;
            parser.feed(decoder.decode(value, { stream: true }));
          }
        } catch {
          return false;
        }
      })();
      const firstEventBy = Date.now() + 10_000;
      while (events.length === 0 && Date.now() < firstEventBy) await sleep(50);
      expect(events[0]).toMatch(/^progress:/);
      // An upload in flight, held after its first segment (record: the batch is visible while it streams).
      const release = gate();
      const upload = heldApi.submitNdjson(heldBody(2_000, (i) => JSON.stringify(memory(i, 'late')), 1_000, release.opened), '?batch_id=uploading&invalid_items=record');
      await waitForStreamed(heldApi, 'uploading', (batch) => batch.upload.received >= 1_000, 20_000);

      const pid = held.pid()!;
      const signalledAt = Date.now();
      process.kill(pid, 'SIGTERM');
      // Generous: the stop takes well under a second here, while the batch would never finish.
      const boundMs = 10_000;
      const ended = await Promise.race([read, sleep(boundMs).then(() => 'still open' as const)]);
      expect(ended, 'the stream ended cleanly within the bound').toBe(true);
      // The upload is still held, so the process is still there to answer it; once it has its body it answers 202.
      expect(held.pid(), 'the process waits for the upload in flight').toBe(pid);
      release.open();
      expect((await upload).status).toBe(202);
      while (held.pid() !== undefined && Date.now() - signalledAt < boundMs) await sleep(50);
      const exitMs = Date.now() - signalledAt;
      console.info(`[event stream] SIGTERM with an open stream: stream ended and process exited after ${exitMs} ms`);
      expect(held.pid(), 'the process exited by itself').toBeUndefined();
      expect(held.output()).toContain('shutting down');
      // The batch never finished: the stream ended because of the stop, with no final event.
      expect(events.every((event) => event.startsWith('progress:') && !event.endsWith(':completed'))).toBe(true);
    } finally {
      await held.kill();
      heldDir.remove();
    }
  });
});
