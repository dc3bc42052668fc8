// The embedded orchestrator run on a worker thread (BATCHMEM_PROCESSING_THREAD, on by default): the thread that
// serves HTTP only accepts uploads and answers reads, while a second thread processes segments, so an upload, a status
// poll or another tenant's small batch never waits behind a segment being decompressed, parsed and written.
// Only batch keys and small control messages cross between the threads, as across a durable orchestrator's boundary.
// If the thread dies, it is started again and resumes every unfinished batch (runs are idempotent).
import { context, propagation } from '@opentelemetry/api';
import type { Worker } from 'node:worker_threads';
import { workflowIdFor } from '../domain/batch.ts';
import { backoffMs, runRestartPolicy } from '../domain/retry-policy.ts';
import type { Orchestrator } from '../ports/orchestrator.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { moduleThread } from './module-thread.ts';
import type { Observer } from './observer.ts';

/** What the thread is started with (structured-cloned into it). */
export interface ThreadData {
  config: Config;
  workerId: string;
  /** A module whose `adapterDecorators()` wraps the thread's adapters (a test harness's seam; see AdapterDecorators). */
  decorators?: string | undefined;
  /** Whether the main thread keeps metrics: the thread then reports to it. */
  metrics: boolean;
}

type Call = 'resume' | 'idle' | 'close' | 'check';

/** Main thread to processing thread. */
export type ToThread =
  | { type: 'start'; key: string; options: { redrive?: number }; carrier: Record<string, string> }
  | { type: 'cancel'; key: string }
  | { type: 'redeliver'; key: string }
  | { type: 'call'; id: number; method: Call };

/** Processing thread to main thread. */
export type FromThread =
  | { type: 'ready' }
  | { type: 'reply'; id: number; value?: unknown; error?: string }
  | { type: 'observe'; target: 'observer' | 'httpSink'; method: string; args: unknown[] };

export interface ProcessingThreadOptions {
  data: ThreadData;
  logger: Logger;
  observer?: Observer | undefined;
}

const entry = new URL('./processing-thread-entry.ts', import.meta.url);

export class ProcessingThread implements Orchestrator {
  readonly #options: ProcessingThreadOptions;
  #worker!: Worker;
  #ready!: Promise<void>;
  /** Resolves when the current thread has ended. */
  #exit!: Promise<void>;
  #nextId = 1;
  readonly #calls = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #closing = false;
  /** Unexpected exits in a row, for the backoff before the next start; reset once a thread has been up a while. */
  #crashes = 0;
  /** Messages sent while the thread is down waiting for its restart, sent when it is back. */
  #held: ToThread[] | undefined;

  private constructor(options: ProcessingThreadOptions) {
    this.#options = options;
  }

  /** Starts the thread and waits until its stores are open; rejects with the thread's error when it cannot start. */
  static async open(options: ProcessingThreadOptions): Promise<ProcessingThread> {
    const thread = new ProcessingThread(options);
    thread.#spawn();
    await thread.#ready;
    return thread;
  }

  #spawn(): void {
    // Named, so that per-thread tools (top -H, /proc/<pid>/task/*/comm, the bench's CPU split) show it as such; its
    // small young generation is moduleThread's default (threadResourceLimits).
    const worker = moduleThread(entry, {
      name: 'processing', // literal: the thread's name, not a batch status
      workerData: this.#options.data,
    });
    this.#worker = worker;
    const startedAt = Date.now();
    this.#exit = new Promise((resolve) => worker.once('exit', () => resolve()));
    this.#ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: FromThread) => {
        if (message.type === 'ready') resolve();
        else this.#received(message);
      });
      worker.once('error', (error) => {
        reject(error);
        this.#options.logger.error({ err: error }, 'the processing thread failed');
      });
      worker.once('exit', (code) => {
        reject(new Error(`the processing thread exited with code ${code} before it was ready`));
        this.#exited(code, Date.now() - startedAt);
      });
    });
    // A start that fails is reported by open(); a restart that fails is retried by #exited.
    this.#ready.catch(() => undefined);
  }

  #exited(code: number, upMs: number): void {
    for (const call of this.#calls.values()) call.reject(new Error(`the processing thread stopped (exit code ${code})`));
    this.#calls.clear();
    if (this.#closing) return;
    this.#crashes = upMs > 60_000 ? 1 : this.#crashes + 1;
    const delay = backoffMs(runRestartPolicy, this.#crashes);
    this.#options.logger.error({ code, restartInMs: delay }, 'the processing thread stopped; starting it again');
    this.#held = [];
    setTimeout(() => {
      if (this.#closing) return;
      this.#spawn();
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const message of held) this.#worker.postMessage(message);
      this.#ready.then(
        () => this.#call('resume'),
        () => undefined,
      ).catch((error: unknown) => this.#options.logger.error({ err: error }, 'the restarted processing thread could not resume'));
    }, delay).unref();
  }

  #received(message: FromThread): void {
    if (message.type === 'reply') {
      const call = this.#calls.get(message.id);
      this.#calls.delete(message.id);
      if (message.error === undefined) call?.resolve(message.value);
      else call?.reject(new Error(message.error));
      return;
    }
    if (message.type === 'observe') {
      const observer = this.#options.observer;
      const target = (message.target === 'httpSink' ? observer?.httpSink?.() : observer) as Record<string, unknown> | undefined;
      const report = target?.[message.method];
      if (typeof report === 'function') report.apply(target, message.args);
    }
  }

  #send(message: ToThread): void {
    if (this.#held) this.#held.push(message);
    else this.#worker.postMessage(message);
  }

  #call(method: Call): Promise<unknown> {
    if (this.#held) return Promise.reject(new Error('the processing thread is restarting'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#worker.postMessage({ type: 'call', id, method } satisfies ToThread);
    });
  }

  async start(batchKey: string, options: { redrive?: number } = {}): Promise<{ workflowId: string }> {
    // The thread's spans for this run join the caller's trace (W3C trace context, as across processes).
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    this.#send({ type: 'start', key: batchKey, options: { redrive: options.redrive }, carrier });
    return { workflowId: workflowIdFor(batchKey, options.redrive) };
  }

  async cancel(batchKey: string): Promise<void> {
    this.#send({ type: 'cancel', key: batchKey });
  }

  async redeliver(batchKey: string): Promise<void> {
    this.#send({ type: 'redeliver', key: batchKey });
  }

  /** Picks up the work a previous process left behind; resolves to the number of batches started. */
  async resume(): Promise<number> {
    return (await this.#call('resume')) as number;
  }

  /** Resolves when the thread has nothing running, queued or being delivered. */
  async idle(): Promise<void> {
    await this.#call('idle');
  }

  /** Fails while the thread is down or does not answer within 5 s. */
  async check(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error('the processing thread did not answer within 5 s')), 5_000);
    });
    try {
      await Promise.race([this.#call('check'), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Graceful: the thread stops scheduling, lets running segments finish, closes its stores, then ends. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    try {
      await this.#call('close');
    } catch {
      // Down already, or restarting: nothing is running in it.
      await this.#worker.terminate();
    }
    // Its work is done and its stores are closed; an idle keep-alive connection (a webhook receiver's) may still
    // hold the thread open for a few seconds, which shutdown need not wait for.
    const grace = setTimeout(() => void this.#worker.terminate(), 1_000);
    await this.#exit;
    clearTimeout(grace);
  }
}
