// A thin test client of the HTTP API, plus generators of memories to submit.
import { expect } from 'vitest';
import { readEventStream } from '../../src/app/sse-parser.ts';

export interface BatchJson {
  id: string;
  status: string;
  request_counts: {
    total: number;
    processed: number;
    succeeded: number;
    failed: number;
    created: number;
    updated: number;
    unchanged: number;
    expired: number;
  };
  progress: number;
  workflow_id: string | null;
  payload: { codec: string; segments: number; raw_bytes: number; stored_bytes: number; compression_ratio: number };
  webhook: { url: string | null; delivered: boolean; attempts: number; last_error: string | null };
  error: string | null;
  webhook_secret?: string;
}

/**
 * Checks a batch's counts: exactly `expected` for the item counts, and the write outcomes (created, updated,
 * unchanged, which depend on what earlier batches stored under the same external ids) adding up to `succeeded`.
 */
export function expectCounts(actual: BatchJson['request_counts'] | undefined, expected: Omit<BatchJson['request_counts'], 'created' | 'updated' | 'unchanged'>) {
  expect(actual).toBeDefined();
  const { created, updated, unchanged, ...counts } = actual!;
  expect(counts).toEqual(expected);
  expect(created + updated + unchanged).toBe(actual!.succeeded);
}

export function memory(index: number, prefix = 'memory') {
  const kinds = ['chat', 'note', 'document'];
  return {
    content: `${prefix} ${index}: the user mentioned preference #${index % 97} while discussing project ${index % 13}.`,
    type: kinds[index % kinds.length],
    metadata: { source: 'test', n: index, tags: [`t${index % 5}`] },
    external_id: `ext-${index}`,
  };
}

export function ndjsonStream(count: number, make: (i: number) => unknown = memory): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let next = 0;
  return new ReadableStream({
    pull(controller) {
      if (next >= count) return controller.close();
      const lines: string[] = [];
      for (let end = Math.min(count, next + 500); next < end; next += 1) lines.push(JSON.stringify(make(next)));
      controller.enqueue(encoder.encode(lines.join('\n') + '\n'));
    },
  });
}

const finalStatuses = new Set(['completed', 'failed', 'cancelled', 'expired']);

export function apiClient(baseUrl: string, key: string) {
  const auth = { authorization: `Bearer ${key}` };
  const request = (path: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });

  const client = {
    request,
    async submitJson(body: unknown, headers: Record<string, string> = {}) {
      return request('/v1/memory/batch', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    },
    async submitNdjson(body: ReadableStream<Uint8Array> | string, query = '', headers: Record<string, string> = {}) {
      return request(`/v1/memory/batch${query}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', ...headers },
        body,
        duplex: 'half',
      } as RequestInit);
    },
    async get(id: string): Promise<BatchJson> {
      const response = await request(`/v1/batch/${id}`);
      if (!response.ok) throw new Error(`GET batch ${id}: ${response.status} ${await response.text()}`);
      return (await response.json()) as BatchJson;
    },
    async waitForFinal(id: string, timeoutMs = 240_000): Promise<BatchJson> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const batch = await client.get(id);
        if (finalStatuses.has(batch.status)) return batch;
        if (Date.now() > deadline) throw new Error(`batch ${id} is still ${batch.status} (${JSON.stringify(batch.request_counts)}) after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async waitFor(id: string, predicate: (batch: BatchJson) => boolean, timeoutMs = 120_000): Promise<BatchJson> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const batch = await client.get(id);
        if (predicate(batch)) return batch;
        if (Date.now() > deadline) throw new Error(`batch ${id} never matched (last: ${JSON.stringify(batch.request_counts)} ${batch.status})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    /** Every page of a list endpoint, following next_cursor. */
    async all<T>(path: string, limit = 1000): Promise<T[]> {
      const items: T[] = [];
      let cursor: string | null = null;
      do {
        const separator = path.includes('?') ? '&' : '?';
        const response = await request(`${path}${separator}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
        const page = (await response.json()) as { data: T[]; next_cursor: string | null };
        items.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor);
      return items;
    },
    /** Follows the SSE stream to its end; returns the event names and the last batch. */
    async events(id: string): Promise<{ names: string[]; last: BatchJson | undefined; status: number }> {
      const response = await request(`/v1/batch/${id}/events`);
      const names: string[] = [];
      let last: BatchJson | undefined;
      if (!response.ok || !response.body) return { names, last, status: response.status };
      await readEventStream(response.body, (event) => {
        names.push(event.event ?? 'message');
        last = JSON.parse(event.data) as BatchJson;
      });
      return { names, last, status: response.status };
    },
  };
  return client;
}

export type ApiClient = ReturnType<typeof apiClient>;
