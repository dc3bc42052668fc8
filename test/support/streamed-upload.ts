// A client that streams an NDJSON body and holds part of it back, so that a test can look at a batch while its
// upload is still open (invalid_items: record processes as segments are stored).
import { expect } from 'vitest';
import type { ApiClient, BatchJson } from './api-client.ts';

export type StreamedBatch = BatchJson & { upload: { complete: boolean; received: number }; invalid_items: string };

/**
 * An NDJSON body of `count` lines built by `line(i)` (0-based), sent in chunks of up to 500 lines. After `holdAfter`
 * lines it waits for `release` before sending more; with `cut` it errors at the end (a dropped connection) instead
 * of closing.
 */
export function heldBody(count: number, line: (i: number) => string, holdAfter: number, release: Promise<void>, cut = false) {
  const encoder = new TextEncoder();
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next === holdAfter) await release;
      if (next >= count) {
        if (cut) controller.error(new Error('client went away'));
        else controller.close();
        return;
      }
      const chunk: string[] = [];
      for (let end = Math.min(count, next + 500, next < holdAfter ? holdAfter : count); next < end; next += 1) chunk.push(line(next));
      controller.enqueue(encoder.encode(chunk.join('\n') + '\n'));
    },
  });
}

/** A promise and the function that resolves it. */
export function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => { open = resolve; });
  return { opened, open };
}

/** Polls the batch until `predicate` holds; a 404 is "not recorded yet" (its first segment is not stored yet). */
export async function waitForStreamed(client: ApiClient, id: string, predicate: (batch: StreamedBatch) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const response = await client.request(`/v1/batch/${id}`);
    if (response.status !== 404) {
      expect(response.status).toBe(200);
      const batch = (await response.json()) as StreamedBatch;
      if (predicate(batch)) return batch;
      last = batch;
    } else await response.body?.cancel();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`batch ${id} never matched; last seen ${JSON.stringify(last)}`);
}
