// The upload thread (BATCHMEM_UPLOAD_THREAD, on by default for `serve`): submit bodies are decoded, parsed, checked,
// serialized into segments, fingerprinted and compressed on a worker thread, so the thread that serves HTTP only
// moves bytes: it hands the body's chunks over as they arrive and writes the finished segments to the payload store.
// Twenty uploads at once then no longer queue behind each other's parsing on the one event loop that also answers
// every status poll (docs/benchmarks.md, "The upload thread").
//
// Per upload (a job), body chunks go in on demand (the thread asks for the next one when its stream has room) and
// checked segments come out, at most `segmentsAhead` ahead of what the store stage has taken, so memory stays bounded
// whatever the body's size. Only bytes and plain data cross: the stores stay on the main thread.
import type { InvalidItems } from '../domain/invalid-items.ts';
import type { Result } from '../domain/result.ts';
import { backoffMs, runRestartPolicy } from '../domain/retry-policy.ts';
import { type AppError, AppFailure } from './errors.ts';
import type { SubmitBodyReader, SubmitBodySpec } from './http/submit-body.ts';
import type { Logger } from './logger.ts';
import { moduleThread } from './module-thread.ts';
import type { BodyRead, DryRunReport, PreparedSegment } from './requests/submit-batch.ts';
import type { Settings } from './services.ts';
import type { Worker } from 'node:worker_threads';

/** Segments the thread may have sent that the store stage has not taken yet. */
export const segmentsAhead = 2;

/** Main thread to upload thread. */
export type ToUploadThread =
  | { type: 'read'; job: number; spec: SubmitBodySpec; kind: 'segments'; mode: InvalidItems | undefined }
  | { type: 'read'; job: number; spec: SubmitBodySpec; kind: 'validate' }
  /** The body's next chunk, its end, or its failure (the client went away), in answer to `pull`. */
  | { type: 'chunk'; job: number; bytes: Uint8Array }
  | { type: 'end'; job: number }
  /** `error`: the body's own refusal as the reader raised it (a Content-Encoding that does not decode, 400). */
  | { type: 'abort'; job: number; error?: AppError }
  /** The store stage took a segment: room for one more. */
  | { type: 'taken'; job: number }
  /** The store stage wants nothing more (it failed, or the batch was cancelled while it streamed). */
  | { type: 'stop'; job: number };

/** Upload thread to main thread. */
export type FromUploadThread =
  | { type: 'ready' }
  | { type: 'pull'; job: number }
  | { type: 'segment'; job: number; firstIndex: number; itemCount: number; rawBytes: number; body: Uint8Array; sha256Hex: string }
  | { type: 'done'; job: number; read: BodyRead }
  | { type: 'report'; job: number; result: Result<DryRunReport, AppError> }
  /** What the submit answers (an AppFailure's error). */
  | { type: 'refused'; job: number; error: AppError }
  /** Anything else: a fault, answered as an internal error. */
  | { type: 'crashed'; job: number; name: string; message: string };

/** What the thread is started with. */
export interface UploadThreadData {
  settings: Settings;
}

type JobEvent = Exclude<FromUploadThread, { type: 'ready' } | { type: 'pull' }>;

/** One upload's side on the main thread: its body's reader, and the thread's answers not yet consumed. */
class Job {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #events: JobEvent[] = [];
  #wake: (() => void) | undefined;
  #bodyDone = false;
  #finished = false;
  /** Set when the thread stopped under this job: what its consumer is told. */
  #lost: Error | undefined;

  readonly id: number;
  /** The thread reading it. */
  readonly worker: Worker;

  constructor(id: number, worker: Worker, body: ReadableStream<Uint8Array>) {
    this.id = id;
    this.worker = worker;
    this.#reader = body.getReader();
  }

  #post(message: ToUploadThread, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  /** The thread wants the next chunk: read it from the request and pass it on (copied: chunks may share a pool). */
  async pull(): Promise<void> {
    if (this.#bodyDone) return;
    let read: ReadableStreamReadResult<Uint8Array>;
    try {
      read = await this.#reader.read();
    } catch (error) {
      this.#bodyDone = true;
      if (!this.#finished) this.#post({ type: 'abort', job: this.id, ...(error instanceof AppFailure ? { error: error.error } : {}) });
      return;
    }
    if (this.#finished) return;
    if (read.done) {
      this.#bodyDone = true;
      this.#post({ type: 'end', job: this.id });
    } else {
      // Copied once into a buffer of its own, which then moves: a request chunk may be a view into a larger buffer.
      const bytes = new Uint8Array(read.value);
      this.#post({ type: 'chunk', job: this.id, bytes }, [bytes.buffer]);
    }
  }

  received(event: JobEvent): void {
    this.#events.push(event);
    this.#wake?.();
  }

  lost(error: Error): void {
    this.#lost = error;
    this.#wake?.();
  }

  /** The thread's next answer for this job; rejects if the thread stopped meanwhile. */
  async next(): Promise<JobEvent> {
    for (;;) {
      const event = this.#events.shift();
      if (event) return event;
      if (this.#lost) throw this.#lost;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  taken(): void {
    this.#post({ type: 'taken', job: this.id });
  }

  /** Ends the job: a body not read to its end is cancelled (the client's rest is not wanted), the thread told to stop. */
  async finish(early: boolean): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    if (early && !this.#lost) this.#post({ type: 'stop', job: this.id });
    if (!this.#bodyDone) await this.#reader.cancel().catch(() => undefined);
    try {
      this.#reader.releaseLock();
    } catch {
      // a read still pending ends with the cancel
    }
  }
}

/** A fault on the upload thread, rethrown on the main thread (answered 500, like any fault while reading a body). */
function threadFault(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

export interface UploadThreadOptions {
  settings: Settings;
  logger: Logger;
  /** How long the thread stays up without an upload (default `defaultIdleMs`). */
  idleMs?: number | undefined;
  /** Called with each thread started, the first and every restart (to watch it: diagnostics, tests). */
  started?: (worker: Worker) => void;
}

const entry = new URL('./upload-thread-entry.ts', import.meta.url);

/**
 * An idle thread holds about 28 MiB (an isolate, zod, the parsers; measured: docs/benchmarks.md), which a server
 * processing a large batch it has received would otherwise carry throughout; a new thread is ready in about 0.2 s.
 */
export const defaultIdleMs = 5_000;

/** The upload thread, as the submit route's SubmitBodyReader. Restarted if it dies; the uploads it held fail (500). */
export class UploadThread implements SubmitBodyReader {
  readonly #options: UploadThreadOptions;
  /** The thread uploads go to, once started; undefined while none runs (idle, or after a crash). */
  #current: Promise<Worker> | undefined;
  /** The same thread once it is ready. */
  #currentWorker: Worker | undefined;
  /** Every thread not yet exited (one, and briefly two while an idle one ends as a new upload arrives). */
  readonly #live = new Map<Worker, Promise<void>>();
  /** Threads ended on purpose (idle), whose exit is no crash. */
  readonly #stopped = new Set<Worker>();
  #nextJob = 1;
  readonly #jobs = new Map<number, Job>();
  #idleTimer: NodeJS.Timeout | undefined;
  #closing = false;
  #crashes = 0;
  /** After a crash, no new thread before this time (ms since the epoch): the restart backoff. */
  #restartAt = 0;

  constructor(options: UploadThreadOptions) {
    this.#options = options;
  }

  /**
   * The running thread, started if there is none: the first upload starts it, and it ends after `idleMs` without
   * one, so that an idle server (or one busy processing a large batch it has received) does not hold its memory.
   * Rejects when it cannot start.
   */
  #running(): Promise<Worker> {
    clearTimeout(this.#idleTimer);
    if (!this.#current) {
      const starting = this.#start();
      this.#current = starting;
      // A thread that failed to start is not kept: the next upload tries again.
      starting.catch(() => {
        if (this.#current === starting) this.#current = undefined;
      });
    }
    return this.#current;
  }

  async #start(): Promise<Worker> {
    const wait = this.#restartAt - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (this.#closing) throw new Error('the upload thread is closed');
    // Its small young generation is moduleThread's default (threadResourceLimits).
    const worker = moduleThread(entry, { name: 'upload', workerData: { settings: this.#options.settings } satisfies UploadThreadData });
    this.#options.started?.(worker);
    const startedAt = Date.now();
    this.#live.set(worker, new Promise((resolve) => worker.once('exit', () => resolve())));
    return new Promise<Worker>((resolve, reject) => {
      worker.on('message', (message: FromUploadThread) => {
        if (message.type === 'ready') {
          this.#currentWorker = worker;
          resolve(worker);
        }
        else if (message.type === 'pull') void this.#jobs.get(message.job)?.pull();
        else this.#jobs.get(message.job)?.received(message);
      });
      worker.once('error', (error) => {
        reject(error);
        this.#options.logger.error({ err: error }, 'the upload thread failed');
      });
      worker.once('exit', (code) => {
        reject(new Error(`the upload thread exited with code ${code} before it was ready`));
        this.#exited(worker, code, Date.now() - startedAt);
      });
    });
  }

  #exited(worker: Worker, code: number, upMs: number): void {
    this.#live.delete(worker);
    const onPurpose = this.#stopped.delete(worker) || this.#closing;
    if (this.#currentWorker === worker) {
      this.#current = undefined;
      this.#currentWorker = undefined;
    }
    const lost = [...this.#jobs.values()].filter((job) => job.worker === worker);
    const error = new Error(`the upload thread stopped (exit code ${code})`);
    for (const job of lost) job.lost(error);
    if (onPurpose) return;
    this.#crashes = upMs > 60_000 ? 1 : this.#crashes + 1;
    this.#restartAt = Date.now() + backoffMs(runRestartPolicy, this.#crashes);
    this.#options.logger.error({ code, uploadsFailed: lost.length }, 'the upload thread stopped; the next upload starts it again');
  }

  /** Ends the thread once no upload has used it for `idleMs`. */
  #idle(): void {
    if (this.#jobs.size > 0 || this.#closing) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      const current = this.#current;
      if (this.#jobs.size > 0 || !current) return;
      this.#current = undefined;
      this.#currentWorker = undefined;
      void current.then((worker) => {
        this.#stopped.add(worker);
        return worker.terminate();
      }, () => undefined);
    }, this.#options.idleMs ?? defaultIdleMs).unref();
  }

  async #open(body: ReadableStream<Uint8Array>, message: (job: number) => ToUploadThread): Promise<Job> {
    const worker = await this.#running();
    const job = new Job(this.#nextJob++, worker, body);
    this.#jobs.set(job.id, job);
    worker.postMessage(message(job.id));
    return job;
  }

  async #close(job: Job, early: boolean): Promise<void> {
    this.#jobs.delete(job.id);
    await job.finish(early);
    this.#idle();
  }

  async *segments(body: ReadableStream<Uint8Array>, spec: SubmitBodySpec, mode: InvalidItems | undefined): AsyncGenerator<PreparedSegment, BodyRead, undefined> {
    const job = await this.#open(body, (id) => ({ type: 'read', job: id, spec, kind: 'segments', mode }));
    let early = true;
    try {
      for (;;) {
        const event = await job.next();
        switch (event.type) {
          case 'segment': {
            const { firstIndex, itemCount, rawBytes, body: bytes, sha256Hex } = event;
            // A Buffer over the moved bytes (no copy), as the payload stores get from an inline read.
            const stored = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            yield { firstIndex, itemCount, rawBytes, encoded: Promise.resolve({ body: stored, sha256Hex }) };
            job.taken();
            continue;
          }
          case 'done':
            early = false;
            return event.read;
          case 'refused':
            early = false;
            throw new AppFailure(event.error);
          case 'crashed':
            early = false;
            throw threadFault(event.name, event.message);
          case 'report':
            throw new Error('the upload thread answered a read of segments with a dry-run report');
        }
      }
    } finally {
      await this.#close(job, early);
    }
  }

  async validate(body: ReadableStream<Uint8Array>, spec: SubmitBodySpec): Promise<Result<DryRunReport, AppError>> {
    const job = await this.#open(body, (id) => ({ type: 'read', job: id, spec, kind: 'validate' }));
    try {
      const event = await job.next();
      if (event.type === 'report') return event.result;
      // What a dry run answers as a real submit would (too large, not UTF-8): thrown, as validateBatch throws it.
      if (event.type === 'refused') throw new AppFailure(event.error);
      if (event.type === 'crashed') throw threadFault(event.name, event.message);
      throw new Error(`the upload thread answered a dry run with ${event.type}`);
    } finally {
      await this.#close(job, false);
    }
  }

  /** Ends the thread; uploads still running fail. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#idleTimer);
    const exits = [...this.#live.values()];
    for (const worker of this.#live.keys()) void worker.terminate();
    await Promise.all(exits);
  }
}
