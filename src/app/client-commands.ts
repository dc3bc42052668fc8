// `batchmem submit`, `status` and `results`: a small client of the HTTP API.
import { SingleBar } from 'cli-progress';
import { readEventStream } from './sse-parser.ts';
import { initialStatus, isCompleted } from '../domain/lifecycle.ts';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
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

/** How often `watch` and `results` reconnect in a row, without progress in between, before giving up. */
const maxReconnects = 10;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows the batch's event stream to its `done` event. A dropped connection is resumed with `Last-Event-ID`, so
 * only newer states arrive (the server answers 204 when the final one was already seen).
 */
async function watch(id: string, total: number, options: ClientOptions): Promise<number> {
  const url = new URL(`/v1/batch/${encodeURIComponent(id)}/events`, options.url);
  const bar = new SingleBar({ format: '{bar} {percentage}% | {value}/{total} memories | {status}', hideCursor: true });
  bar.start(total, 0, { status: initialStatus });
  let finalStatus = 'unknown';
  let lastEventId: string | undefined;
  let retryMs = 2000;
  for (let failures = 0, ended = false; !ended; ) {
    let progressed = false;
    try {
      const response = await fetch(url, { headers: headers(options, lastEventId ? { 'last-event-id': lastEventId } : {}) });
      if (response.status === 204) break;
      if (!response.ok || !response.body) {
        bar.stop();
        return fail(response);
      }
      await readEventStream(
        response.body,
        (event) => {
          const batch = JSON.parse(event.data) as { status: string; request_counts: { processed: number } };
          bar.update(batch.request_counts.processed, { status: batch.status });
          finalStatus = batch.status;
          lastEventId = event.id ?? lastEventId;
          progressed = true;
          if (event.event === 'done') ended = true;
        },
        (ms) => (retryMs = ms),
      );
    } catch {
      // The connection dropped: resume below.
    }
    if (ended) break;
    failures = progressed ? 0 : failures + 1;
    if (failures > maxReconnects) {
      bar.stop();
      process.stderr.write(`lost the event stream of batch ${id} ${failures} times in a row\n`);
      return 1;
    }
    await pause(retryMs);
  }
  bar.stop();
  process.stdout.write(`batch ${id}: ${finalStatus}\n`);
  return isCompleted(finalStatus) ? 0 : 1;
}

export interface ResultsOptions extends Pick<ClientOptions, 'url' | 'key'> {
  /** The file to write; stdout when absent. */
  output?: string | undefined;
  /** errors.ndjson (the items that did not succeed) instead of results.ndjson. */
  errorsOnly?: boolean;
}

/**
 * `batchmem results <id> [-o file]`: downloads the batch's results file (gzip on the wire) with a progress bar.
 * Only whole lines are written; after a dropped connection the download resumes at the item after the last line.
 */
export async function downloadResults(id: string, options: ResultsOptions): Promise<number> {
  const base = `/v1/batch/${encodeURIComponent(id)}`;
  const head = await fetch(new URL(base, options.url), { headers: headers(options as ClientOptions) });
  if (!head.ok) return fail(head);
  const batch = (await head.json()) as { status: string; request_counts: { total: number; succeeded: number } };
  const expected = options.errorsOnly ? batch.request_counts.total - batch.request_counts.succeeded : batch.request_counts.total;
  const out: WriteStream | NodeJS.WriteStream = options.output ? createWriteStream(options.output) : process.stdout;
  const bar = new SingleBar({ format: '{bar} {percentage}% | {value}/{total} items', hideCursor: true, stream: process.stderr });
  bar.start(expected, 0);
  let lines = 0;
  let nextIndex = 0;
  const write = (text: string) => new Promise<void>((resolve, reject) => (out.write(text, (error) => (error ? reject(error) : resolve()))));
  for (let failures = 0; ; ) {
    let progressed = false;
    let complete = false;
    try {
      const url = new URL(`${base}/${options.errorsOnly ? 'errors' : 'results'}.ndjson`, options.url);
      if (nextIndex > 0) url.searchParams.set('from_index', String(nextIndex));
      // fetch asks for gzip and inflates it itself.
      const response = await fetch(url, { headers: headers(options as ClientOptions) });
      if (!response.ok || !response.body) {
        bar.stop();
        return fail(response);
      }
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        const end = pending.lastIndexOf('\n');
        if (end < 0) continue;
        const whole = pending.slice(0, end + 1);
        pending = pending.slice(end + 1);
        await write(whole);
        const last = whole.slice(whole.lastIndexOf('\n', whole.length - 2) + 1);
        nextIndex = Number(/^\{"index":(\d+)/.exec(last)?.[1] ?? nextIndex - 1) + 1;
        lines += whole.split('\n').length - 1;
        bar.update(lines);
        progressed = true;
      }
      complete = pending === '';
    } catch {
      // The connection dropped: resume below from the item after the last whole line.
    }
    if (complete) break;
    failures = progressed ? 0 : failures + 1;
    if (failures > maxReconnects) {
      bar.stop();
      process.stderr.write(`the download of batch ${id} failed ${failures} times in a row\n`);
      return 1;
    }
    await pause(1000);
  }
  bar.stop();
  if (options.output) await new Promise<void>((resolve) => (out as WriteStream).end(resolve));
  process.stderr.write(`batch ${id} (${batch.status}): ${lines} lines${options.output ? ` in ${options.output}` : ''}\n`);
  return 0;
}

export async function printStatus(id: string, options: ClientOptions): Promise<number> {
  const response = await fetch(new URL(`/v1/batch/${encodeURIComponent(id)}`, options.url), { headers: headers(options) });
  if (!response.ok) return fail(response);
  process.stdout.write(`${JSON.stringify(await response.json(), null, 2)}\n`);
  return 0;
}
