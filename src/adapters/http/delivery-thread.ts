// The HTTP sink's delivery thread: the request loop (request-loop.ts) on a worker thread of its own that does nothing
// but the sink's I/O. The thread that builds chunks (decoding segments, the ledger, serialization) hands it built
// requests and gets final answers back; an answer is read, and the next request written, as it arrives, not after
// the builder's current step. Measured against the loop on the building thread: docs/benchmarks.md.
import { Worker } from 'node:worker_threads';
import type { WireRequest } from './formats.ts';
import { type FinalAnswer, type HttpSinkObserver, type Requests, type RequestLoopSettings, type SignedHeaders, SinkUnavailableError } from './request-loop.ts';

/** Starts the thread running `entry` with `workerData`; `startWorker` unless a test needs its own hold on the thread. */
export type StartThread = (entry: URL, workerData: DeliveryThreadData) => Worker;

export interface DeliveryThreadData {
  settings: RequestLoopSettings;
}

/** To the thread. */
export type ToDelivery =
  | { type: 'send'; id: number; memories: number; wire: WireRequest; signed: SignedHeaders }
  | { type: 'paused'; id: number };

/** From the thread. */
export type FromDelivery =
  | { type: 'answer'; id: number; answer: FinalAnswer }
  | { type: 'error'; id: number; message: string; unavailable: boolean }
  | { type: 'paused'; id: number; ms: number }
  | { type: 'observe'; method: keyof HttpSinkObserver; args: unknown[] };

const entry = new URL('./delivery-thread-entry.ts', import.meta.url);

/** Node.js's own start: the thread loads the entry as TypeScript, stripped of its types by Node.js. */
export const startWorker: StartThread = (url, workerData) => new Worker(url, { name: 'delivery', workerData });

/**
 * Requests sent by the delivery thread. The thread starts on the first request (a process that only reads the ledger
 * never starts it) and again on the next request after it died; the requests it had in hand then fail, so their
 * segment attempts are retried.
 */
export class DeliveryThread implements Requests {
  readonly #data: DeliveryThreadData;
  readonly #observer: HttpSinkObserver | undefined;
  readonly #start: StartThread;
  #worker: Worker | undefined;
  /** Closed: no thread is started again, and new requests fail at once. */
  #closed = false;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve(value: never): void; reject(error: Error): void }>();

  constructor(settings: RequestLoopSettings, observer: HttpSinkObserver | undefined, start: StartThread = startWorker) {
    this.#data = { settings };
    this.#observer = observer;
    this.#start = start;
  }

  send(memories: number, wire: WireRequest, signed: SignedHeaders): Promise<FinalAnswer> {
    return this.#call((id) => ({ type: 'send', id, memories, wire, signed }));
  }

  /** Starts the thread now rather than with the first request, so that the first request does not wait for it. */
  start(): void {
    this.#worker ??= this.#spawn();
    this.#worker.unref();
  }

  async pausedForMs(): Promise<number> {
    return this.#worker ? this.#call((id) => ({ type: 'paused', id })) : 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    // Requests still held end here, saying why, before the thread's exit would report them as a crash.
    const error = new SinkUnavailableError('the sink closed as the process is stopping; the requests it held are sent again with their segments');
    for (const id of [...this.#pending.keys()]) this.#settle(id, { error });
    // The thread closes its connections as it ends; terminate waits for it.
    if (worker) await worker.terminate();
  }

  #call<T>(message: (id: number) => ToDelivery): Promise<T> {
    if (this.#closed) return Promise.reject(new SinkUnavailableError('the sink closed as the process is stopping'));
    const worker = (this.#worker ??= this.#spawn());
    const id = this.#nextId++;
    // A thread with requests in hand keeps the process up; an idle one does not.
    if (this.#pending.size === 0) worker.ref();
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: never) => void, reject });
      worker.postMessage(message(id));
    });
  }

  #settle(id: number, outcome: { value: unknown } | { error: Error }): void {
    const call = this.#pending.get(id);
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker?.unref();
    if ('error' in outcome) call?.reject(outcome.error);
    else call?.resolve(outcome.value as never);
  }

  #spawn(): Worker {
    const worker = this.#start(entry, this.#data);
    worker.on('message', (message: FromDelivery) => {
      switch (message.type) {
        case 'answer':
          return this.#settle(message.id, { value: message.answer });
        case 'paused':
          return this.#settle(message.id, { value: message.ms });
        case 'error':
          return this.#settle(message.id, { error: message.unavailable ? new SinkUnavailableError(message.message) : new Error(message.message) });
        case 'observe':
          return (this.#observer?.[message.method] as ((...args: unknown[]) => void) | undefined)?.apply(this.#observer, message.args);
      }
    });
    const stopped = (reason: string) => {
      if (this.#worker === worker) this.#worker = undefined;
      const error = new SinkUnavailableError(`the delivery thread stopped (${reason}); the requests it held are sent again with their segments`);
      for (const id of [...this.#pending.keys()]) this.#settle(id, { error });
    };
    worker.once('error', (error) => stopped(error.message));
    worker.once('exit', (code) => stopped(`exit code ${code}`));
    return worker;
  }
}
