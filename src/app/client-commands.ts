// `batchmem submit` and `batchmem status`: a small client of the HTTP API.
import { SingleBar } from 'cli-progress';
import { readEventStream } from './sse-parser.ts';
import { initialStatus, isCompleted } from '../domain/lifecycle.ts';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';

export interface ClientOptions {
  url: string;
  key: string;
  watch: boolean;
  batchId?: string | undefined;
}

function headers(options: ClientOptions, extra: Record<string, string> = {}) {
  return { authorization: `Bearer ${options.key}`, ...extra };
}

async function fail(response: Response): Promise<number> {
  const text = await response.text();
  process.stderr.write(`HTTP ${response.status}: ${text}\n`);
  return 1;
}

export async function submitFile(path: string, options: ClientOptions): Promise<number> {
  const size = (await stat(path)).size;
  const ndjson = !path.endsWith('.json');
  const url = new URL('/v1/memory/batch', options.url);
  if (options.batchId && ndjson) url.searchParams.set('batch_id', options.batchId);
  const response = await fetch(url, {
    method: 'POST',
    headers: headers(options, { 'content-type': ndjson ? 'application/x-ndjson' : 'application/json', 'content-length': String(size) }),
    body: Readable.toWeb(createReadStream(path)) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  if (!response.ok) return fail(response);
  const batch = (await response.json()) as { id: string; request_counts: { total: number } };
  process.stdout.write(`${JSON.stringify(batch, null, 2)}\n`);
  if (!options.watch) return 0;
  return watch(batch.id, batch.request_counts.total, options);
}

async function watch(id: string, total: number, options: ClientOptions): Promise<number> {
  const response = await fetch(new URL(`/v1/batch/${encodeURIComponent(id)}/events`, options.url), { headers: headers(options) });
  if (!response.ok || !response.body) return fail(response);
  const bar = new SingleBar({ format: '{bar} {percentage}% | {value}/{total} memories | {status}', hideCursor: true });
  bar.start(total, 0, { status: initialStatus });
  let finalStatus = 'unknown';
  await readEventStream(response.body, (event) => {
    const batch = JSON.parse(event.data) as { status: string; request_counts: { processed: number } };
    bar.update(batch.request_counts.processed, { status: batch.status });
    finalStatus = batch.status;
  });
  bar.stop();
  process.stdout.write(`batch ${id}: ${finalStatus}\n`);
  return isCompleted(finalStatus) ? 0 : 1;
}

export async function printStatus(id: string, options: ClientOptions): Promise<number> {
  const response = await fetch(new URL(`/v1/batch/${encodeURIComponent(id)}`, options.url), { headers: headers(options) });
  if (!response.ok) return fail(response);
  process.stdout.write(`${JSON.stringify(await response.json(), null, 2)}\n`);
  return 0;
}
