// The embedded orchestrator: runs batches in this process, and on start resumes every batch a previous process left
// unfinished (or whose webhook is still owed). Every batch is admitted at once; their segments share the process's
// slots through the fair-share scheduler, so one tenant's backlog does not hold back another tenant's batch.
import { workflowIdFor } from '../domain/batch.ts';
import { backoffMs, runRestartPolicy } from '../domain/retry-policy.ts';
import type { Services } from './services.ts';
import { deliverWithRetries, runBatch } from './processing/run-batch.ts';
import type { Orchestrator } from '../ports/orchestrator.ts';
import { FairShareScheduler, fairShareLimits } from './fair-share.ts';

/**
 * How long a stop waits for running segments before ending the sink's waiting writes: under `docker stop`'s 10 s
 * before SIGKILL, so the stop stays graceful (stores closed) there too.
 */
const stopGraceMs = 5_000;

export interface LocalOrchestratorOptions {
  workerId: string;
  /**
   * The work in flight: segments at once in the whole process, however many batches are running, each batch at most
   * the settings' `segmentConcurrency` of them (src/app/fair-share.ts).
   */
  batchConcurrency: number;
  /** Segments one tenant (organization) may have in flight; default three quarters of the total, rounded up. */
  tenantConcurrency?: number;
  /** Called as each segment attempt run starts (tests observe the interleaving through it). */
  onSegmentStart?: (key: string, segment: number) => void;
  onError?: (key: string, error: unknown) => void;
  onSegmentError?: (key: string, segment: number, attempt: number, error: unknown) => void;
  onSegmentDone?: (key: string, segment: number, durationMs: number) => void;
}

export class LocalOrchestrator implements Orchestrator {
  readonly #services: Services;
  readonly #options: LocalOrchestratorOptions;
  readonly #running = new Map<string, AbortController>();
  readonly #scheduler: FairShareScheduler;
  /** Started again while running (a redrive of a batch whose run was still returning). */
  readonly #again = new Set<string>();
  readonly #shutdown = new AbortController();
  readonly #deliveries = new Set<Promise<void>>();
  /** Runs that threw (a backend failing for a while), waiting to be tried again. */
  readonly #retries = new Map<string, NodeJS.Timeout>();
  /** Consecutive failures per batch, for the backoff. */
  readonly #failures = new Map<string, number>();

  constructor(services: Services, options: LocalOrchestratorOptions) {
    this.#services = services;
    this.#options = options;
    this.#scheduler = new FairShareScheduler(fairShareLimits(options.batchConcurrency, services.settings.segmentConcurrency, options.tenantConcurrency));
  }

  /** Segments running now, in total and per organization. */
  get segmentsRunning(): { total: number; tenants: Record<string, number> } {
    return this.#scheduler.running;
  }

  /** Picks up the work a previous process left behind. */
  async resume(): Promise<number> {
    const keys = await this.#services.batches.listNeedingWork(this.#services.settings.webhookMaxAttempts);
    for (const key of keys) await this.start(key);
    return keys.length;
  }

  async start(batchKey: string, options: { redrive?: number } = {}): Promise<{ workflowId: string }> {
    // A redrive may come while the run that just ended is still returning: it runs again right after.
    if (this.#running.has(batchKey)) this.#again.add(batchKey);
    else if (!this.#shutdown.signal.aborted) this.#run(batchKey);
    return { workflowId: workflowIdFor(batchKey, options.redrive) };
  }

  async cancel(batchKey: string): Promise<void> {
    // Its segments still waiting for a slot are dropped at once, so it moves straight from cancelling to cancelled.
    this.#running.get(batchKey)?.abort();
  }

  /** Resolves when nothing is running, queued or being delivered (for tests and graceful shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#deliveries.size > 0 || this.#retries.size > 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  #deliver(key: string): void {
    const delivery = deliverWithRetries(this.#services, key, this.#shutdown.signal)
      .then(() => {
        this.#failures.delete(key);
      })
      .catch((error: unknown) => this.#failed(key, error))
      .finally(() => this.#deliveries.delete(delivery));
    this.#deliveries.add(delivery);
  }

  /**
   * A run or delivery that threw met a backend failure (use cases return expected outcomes, they do not throw).
   * Everything they do is idempotent, so the batch is started again after a capped backoff, as a durable
   * orchestrator would retry an activity; otherwise it would wait, unfinished, for the next process start.
   */
  #failed(key: string, error: unknown): void {
    this.#options.onError?.(key, error);
    if (this.#shutdown.signal.aborted || this.#retries.has(key)) return;
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    const timer = setTimeout(() => {
      this.#retries.delete(key);
      void this.start(key);
    }, backoffMs(runRestartPolicy, failures));
    this.#retries.set(key, timer);
  }

  async redeliver(batchKey: string): Promise<void> {
    if (!this.#shutdown.signal.aborted) this.#deliver(batchKey);
  }

  async check(): Promise<void> {}

  /**
   * Stops scheduling segments; running segments get `stopGraceMs` to finish, then the sink's writes still waiting on
   * their target are ended (an HTTP target that is down would otherwise hold the stop for its whole outage
   * tolerance). Unfinished batches resume on the next start.
   */
  async close(): Promise<void> {
    this.#shutdown.abort();
    for (const timer of this.#retries.values()) clearTimeout(timer);
    this.#retries.clear();
    for (const controller of this.#running.values()) controller.abort();
    const idle = this.idle();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), stopGraceMs)));
    if (await Promise.race([idle.then(() => false), graceOver])) await this.#services.sink.interrupt?.();
    clearTimeout(timer);
    await idle;
  }

  #run(key: string): void {
    const controller = new AbortController();
    this.#running.set(key, controller);
    const signal = AbortSignal.any([controller.signal, this.#shutdown.signal]);
    runBatch(this.#services, key, {
      workerId: this.#options.workerId,
      signal,
      lane: (plan, halt) => this.#scheduler.lane(plan.tenant.organization, key, halt),
      onSegmentStart: (segment) => this.#options.onSegmentStart?.(key, segment),
      onSegmentError: (segment, attempt, error) => this.#options.onSegmentError?.(key, segment, attempt, error),
      onSegmentDone: (segment, ms) => this.#options.onSegmentDone?.(key, segment, ms),
    })
      .then((end) => {
        if (end === 'finished') this.#deliver(key);
      })
      .catch((error: unknown) => this.#failed(key, error))
      .finally(() => {
        this.#running.delete(key);
        if (this.#again.delete(key) && !this.#shutdown.signal.aborted) this.#run(key);
      });
  }
}
