// The embedded runner's segment scheduler: every admitted batch queues its segments here, and free slots go
// round-robin across tenants (fewest in flight first), then across one tenant's batches. A tenant's cap below the total keeps
// slots free for the others, so a small batch never waits behind another tenant's backlog (docs/benchmarks.md, fairness).

export interface FairShareLimits {
  /** Segments in flight in the whole process. */
  inFlight: number;
  /**
   * Segments one tenant may have in flight, at most `inFlight`. Only a cap below `inFlight` keeps a slot free for
   * another tenant: the default (¾, rounded up) is the whole of a total of 1 to 3, and a larger explicit cap is cut
   * to the total (`tenantCapWarning`). Even then a newcomer waits only until the first running segment ends (round-robin).
   */
  perTenant: number;
  /** Segments one batch may have in flight. */
  perBatch: number;
}

/** Runs `task` when the scheduler gives it a slot; resolves `undefined` without running it if the lane closed first. */
export type Lane = <T>(task: () => Promise<T>) => Promise<T | undefined>;

interface Waiting {
  start(): void;
  drop(): void;
}

interface BatchQueue {
  key: string;
  inFlight: number;
  /** The scheduler's turn when this batch last got a slot; 0 if never, so a newcomer wins a tie. */
  lastServed: number;
  waiting: Waiting[];
}

interface TenantQueue {
  inFlight: number;
  lastServed: number;
  batches: BatchQueue[];
}

/**
 * The limits from the settings: `batchConcurrency` segments in flight in the whole process (the work in flight, not
 * the batches admitted: every batch is admitted), at most `segmentConcurrency` of them for one batch, and one tenant
 * at most three quarters of them (rounded up, at least one) unless `perTenant` is given. On embedded defaults every
 * segment's CPU work shares the one thread that also serves HTTP, so more segments in flight do not write faster;
 * they only make every other request wait longer (docs/benchmarks.md, measurement 8).
 */
export function fairShareLimits(batchConcurrency: number, segmentConcurrency: number, perTenant?: number): FairShareLimits {
  const inFlight = batchConcurrency;
  return {
    inFlight,
    perBatch: Math.min(segmentConcurrency, inFlight),
    perTenant: Math.min(inFlight, perTenant ?? Math.max(1, Math.ceil((inFlight * 3) / 4))),
  };
}

/**
 * A start-up warning when one tenant may take every slot (its cap, explicit or the default, is not below
 * `batchConcurrency`), so the operator learns that BATCHMEM_TENANT_CONCURRENCY keeps nothing free; undefined when the
 * cap leaves a slot to others. The configuration stays valid: slots still go round-robin, so another tenant's segment
 * waits only until the first running segment ends.
 */
export function tenantCapWarning(batchConcurrency: number, perTenant?: number): string | undefined {
  const cap = fairShareLimits(batchConcurrency, 1, perTenant).perTenant;
  if (cap < batchConcurrency) return undefined;
  const setting =
    perTenant === undefined
      ? `the default BATCHMEM_TENANT_CONCURRENCY (¾ of BATCHMEM_BATCH_CONCURRENCY, rounded up) is ${cap}, not below BATCHMEM_BATCH_CONCURRENCY=${batchConcurrency}`
      : perTenant > batchConcurrency
        ? `BATCHMEM_TENANT_CONCURRENCY=${perTenant} is above BATCHMEM_BATCH_CONCURRENCY=${batchConcurrency} (it is cut to ${cap})`
        : `BATCHMEM_TENANT_CONCURRENCY=${perTenant} is not below BATCHMEM_BATCH_CONCURRENCY=${batchConcurrency}`;
  return `${setting}: one organization may hold every segment slot, so none stays free for the others; set BATCHMEM_TENANT_CONCURRENCY below BATCHMEM_BATCH_CONCURRENCY to keep some`;
}

export class FairShareScheduler {
  readonly #limits: FairShareLimits;
  /** Tenants with work waiting or running. */
  readonly #tenants = new Map<string, TenantQueue>();
  #inFlight = 0;
  /** Counts the slots given, to tell who was served longest ago. */
  #turn = 0;

  constructor(limits: FairShareLimits) {
    if (limits.inFlight < 1 || limits.perTenant < 1 || limits.perBatch < 1) throw new RangeError('fair-share limits must be at least 1');
    this.#limits = limits;
  }

  /** Segments running now, in total and per tenant (for tests and metrics). */
  get running(): { total: number; tenants: Record<string, number> } {
    const tenants: Record<string, number> = {};
    for (const [tenant, queue] of this.#tenants) tenants[tenant] = queue.inFlight;
    return { total: this.#inFlight, tenants };
  }

  /**
   * One batch's way in: `tenant` is the fairness key (the organization), `batchKey` the batch. When `signal`
   * aborts, the batch's waiting tasks are dropped (they resolve `undefined`); running ones finish.
   */
  lane(tenant: string, batchKey: string, signal?: AbortSignal): Lane {
    return <T>(task: () => Promise<T>) =>
      new Promise<T | undefined>((resolve, reject) => {
        if (signal?.aborted) return resolve(undefined);
        const batch = this.#batchQueue(tenant, batchKey);
        const onAbort = () => this.#dropWaiting(tenant, batchKey);
        signal?.addEventListener('abort', onAbort, { once: true });
        batch.waiting.push({
          start: () => {
            signal?.removeEventListener('abort', onAbort);
            Promise.resolve()
              .then(task)
              .then(resolve, reject)
              .finally(() => this.#finished(tenant, batch));
          },
          drop: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve(undefined);
          },
        });
        this.#dispatch();
      });
  }

  #batchQueue(tenant: string, batchKey: string): BatchQueue {
    let queue = this.#tenants.get(tenant);
    if (!queue) {
      queue = { inFlight: 0, lastServed: 0, batches: [] };
      this.#tenants.set(tenant, queue);
    }
    let batch = queue.batches.find((b) => b.key === batchKey);
    if (!batch) {
      batch = { key: batchKey, inFlight: 0, lastServed: 0, waiting: [] };
      queue.batches.push(batch);
    }
    return batch;
  }

  #dropWaiting(tenant: string, batchKey: string): void {
    const queue = this.#tenants.get(tenant);
    const batch = queue?.batches.find((b) => b.key === batchKey);
    if (!queue || !batch) return;
    const dropped = batch.waiting.splice(0);
    this.#forget(tenant, queue, batch);
    for (const waiting of dropped) waiting.drop();
  }

  #finished(tenant: string, batch: BatchQueue): void {
    batch.inFlight -= 1;
    this.#inFlight -= 1;
    const queue = this.#tenants.get(tenant)!;
    queue.inFlight -= 1;
    this.#forget(tenant, queue, batch);
    this.#dispatch();
  }

  /** Removes a batch with nothing waiting or running, and a tenant with no batches left. */
  #forget(tenant: string, queue: TenantQueue, batch: BatchQueue): void {
    if (batch.inFlight === 0 && batch.waiting.length === 0) queue.batches.splice(queue.batches.indexOf(batch), 1);
    if (queue.batches.length === 0) this.#tenants.delete(tenant);
  }

  /**
   * Fills free slots. Each goes to the tenant with the fewest segments in flight (under its cap, with a batch that can
   * start one), then to that tenant's batch with the fewest in flight; ties go to whoever was served longest ago.
   * Counting what is in flight, not only taking turns, lets a tenant that just arrived go ahead of one holding slots.
   */
  #dispatch(): void {
    while (this.#inFlight < this.#limits.inFlight) {
      const next = this.#pick();
      if (!next) return;
      const [queue, batch] = next;
      this.#turn += 1;
      queue.lastServed = this.#turn;
      batch.lastServed = this.#turn;
      batch.inFlight += 1;
      queue.inFlight += 1;
      this.#inFlight += 1;
      batch.waiting.shift()!.start();
    }
  }

  #pick(): [TenantQueue, BatchQueue] | undefined {
    let best: [TenantQueue, BatchQueue] | undefined;
    for (const queue of this.#tenants.values()) {
      if (queue.inFlight >= this.#limits.perTenant || (best && !before(queue, best[0]))) continue;
      let batch: BatchQueue | undefined;
      for (const candidate of queue.batches) {
        if (candidate.waiting.length === 0 || candidate.inFlight >= this.#limits.perBatch) continue;
        if (!batch || before(candidate, batch)) batch = candidate;
      }
      if (batch) best = [queue, batch];
    }
    return best;
  }
}

/** Whether `a` goes before `b`: fewer segments in flight, then served longer ago. */
function before(a: { inFlight: number; lastServed: number }, b: { inFlight: number; lastServed: number }): boolean {
  return a.inFlight < b.inFlight || (a.inFlight === b.inFlight && a.lastServed < b.lastServed);
}
