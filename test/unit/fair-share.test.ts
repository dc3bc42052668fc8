// Fair share on the embedded runner: the scheduler's order of segment starts, and through the HTTP app that another
// tenant's small batch starts while one tenant's backlog fills the runner. Observed by order of starts, not timed.
import { afterEach, describe, expect, it } from 'vitest';
import { keyring } from '../../src/app/api-keys.ts';
import { FairShareScheduler, fairShareLimits, tenantCapWarning } from '../../src/app/fair-share.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import type { ItemOutcome } from '../../src/ports/memory-sink.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from '../support/fakes.ts';

/** A task that runs until `finish()` is called, recording when it started. */
function gatedTasks() {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const task = (name: string) => () => {
    started.push(name);
    return new Promise<string>((resolve) => gates.set(name, () => resolve(name)));
  };
  const finish = async (name: string) => {
    gates.get(name)!();
    // Let the scheduler's completion handler and the next start run.
    for (let i = 0; i < 5; i += 1) await Promise.resolve();
  };
  const settle = async () => {
    for (let i = 0; i < 5; i += 1) await Promise.resolve();
  };
  return { started, task, finish, settle };
}

describe('fair-share scheduler', () => {
  it('takes batch concurrency as the segments in flight, segment concurrency per batch, three quarters per tenant', () => {
    expect(fairShareLimits(4, 4)).toEqual({ inFlight: 4, perBatch: 4, perTenant: 3 });
    expect(fairShareLimits(16, 4)).toEqual({ inFlight: 16, perBatch: 4, perTenant: 12 });
    expect(fairShareLimits(1, 4)).toEqual({ inFlight: 1, perBatch: 1, perTenant: 1 });
    expect(fairShareLimits(8, 4, 2)).toEqual({ inFlight: 8, perBatch: 4, perTenant: 2 });
    expect(fairShareLimits(4, 4, 99).perTenant).toBe(4);
  });

  it('warns when one tenant may take every slot: a default cap of a total of 1 to 3, an explicit cap at or above the total', () => {
    expect(tenantCapWarning(4)).toBeUndefined();
    expect(tenantCapWarning(5)).toBeUndefined();
    expect(tenantCapWarning(3)).toMatch(/is 3, not below BATCHMEM_BATCH_CONCURRENCY=3/);
    expect(tenantCapWarning(8, 7)).toBeUndefined();
    expect(tenantCapWarning(2)).toMatch(/^the default BATCHMEM_TENANT_CONCURRENCY .* is 2, not below BATCHMEM_BATCH_CONCURRENCY=2: one organization may hold every segment slot/);
    expect(tenantCapWarning(1)).toMatch(/is 1, not below BATCHMEM_BATCH_CONCURRENCY=1/);
    expect(tenantCapWarning(4, 4)).toMatch(/^BATCHMEM_TENANT_CONCURRENCY=4 is not below BATCHMEM_BATCH_CONCURRENCY=4:/);
    expect(tenantCapWarning(4, 9)).toMatch(/^BATCHMEM_TENANT_CONCURRENCY=9 is above BATCHMEM_BATCH_CONCURRENCY=4 \(it is cut to 4\):/);
  });

  it("starts a tenant that arrives later before the next of a tenant already holding slots, and takes turns between one tenant's batches", async () => {
    const scheduler = new FairShareScheduler({ inFlight: 2, perTenant: 2, perBatch: 2 });
    const { started, task, finish, settle } = gatedTasks();
    const a1 = scheduler.lane('org-a', 'a1');
    const a2 = scheduler.lane('org-a', 'a2');
    const b1 = scheduler.lane('org-b', 'b1');
    for (let i = 0; i < 3; i += 1) void a1(task(`a1-${i}`));
    await settle();
    // Alone, A's first batch takes both slots.
    expect(started).toEqual(['a1-0', 'a1-1']);
    for (let i = 0; i < 3; i += 1) void a2(task(`a2-${i}`));
    void b1(task('b1-0'));
    await settle();
    expect(started).toHaveLength(2);
    // The first freed slot goes to B (none in flight) rather than to A (one in flight).
    await finish('a1-0');
    expect(started.at(-1)).toBe('b1-0');
    // Then A's second batch, which has had no turn, before the first one's third segment.
    await finish('a1-1');
    expect(started.at(-1)).toBe('a2-0');
    await finish('b1-0');
    expect(started.at(-1)).toBe('a1-2');
    await finish('a2-0');
    await finish('a1-2');
    await finish('a2-1');
    await finish('a2-2');
    expect(started).toEqual(['a1-0', 'a1-1', 'b1-0', 'a2-0', 'a1-2', 'a2-1', 'a2-2']);
    expect(scheduler.running.total).toBe(0);
  });

  it("keeps slots free for other tenants: a tenant at its cap waits while another tenant's task starts at once", async () => {
    const scheduler = new FairShareScheduler({ inFlight: 4, perTenant: 3, perBatch: 4 });
    const { started, task, settle } = gatedTasks();
    const a = scheduler.lane('org-a', 'a1');
    for (let i = 0; i < 10; i += 1) void a(task(`a-${i}`));
    await settle();
    expect(started).toEqual(['a-0', 'a-1', 'a-2']);
    void scheduler.lane('org-b', 'b1')(task('b-0'));
    await settle();
    expect(started).toEqual(['a-0', 'a-1', 'a-2', 'b-0']);
    expect(scheduler.running).toEqual({ total: 4, tenants: { 'org-a': 3, 'org-b': 1 } });
  });

  it('drops the waiting tasks of a lane whose signal aborts; running ones finish', async () => {
    const scheduler = new FairShareScheduler({ inFlight: 1, perTenant: 1, perBatch: 1 });
    const { started, task, finish, settle } = gatedTasks();
    const halt = new AbortController();
    const lane = scheduler.lane('org-a', 'a1', halt.signal);
    const first = lane(task('a-0'));
    const second = lane(task('a-1'));
    await settle();
    halt.abort();
    expect(await second).toBeUndefined();
    await finish('a-0');
    expect(await first).toBe('a-0');
    expect(started).toEqual(['a-0']);
    expect(scheduler.running.total).toBe(0);
  });
});

/** A sink that holds every write until `release()`. */
class GatedSink extends MemorySinkFake {
  held = true;
  #waiting: (() => void)[] = [];
  override async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    if (this.held) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return super.writeSegment(records);
  }
  release() {
    this.held = false;
    for (const resume of this.#waiting.splice(0)) resume();
  }
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe('the embedded runner shares segment slots between tenants', () => {
  it("starts another tenant's one-segment batch while one tenant's three batches of 30 segments hold the runner", async () => {
    const keyA = 'key-a-0000000000000000000000';
    const keyB = 'key-b-0000000000000000000000';
    const sink = new GatedSink();
    const base = {
      batches: new MemoryBatchRepository(),
      payloads: new MemoryPayloadStore(),
      sink,
      webhooks: new ScriptedNotifier(),
      clock: systemClock,
      settings: { ...defaultSettings, segmentMaxItems: 10, segmentConcurrency: 4, dedupeWindowMs: 0 },
    };
    const starts: { key: string; segment: number }[] = [];
    // Four segments in flight: before fair share, this admitted four batches first come, first served.
    const orchestrator = new LocalOrchestrator(base, { workerId: 'w', batchConcurrency: 4, onSegmentStart: (key, segment) => starts.push({ key, segment }) });
    closers.push(() => {
      sink.release();
      return orchestrator.close();
    });
    const services: OrchestratedServices = { ...base, orchestrator };
    const app = createHttpApp({
      services,
      keys: keyring([
        { key: keyA, organization: 'org-a', namespace: 'ns', user: 'user-a', workspace: 'ws' },
        { key: keyB, organization: 'org-b', namespace: 'ns', user: 'user-b', workspace: 'ws' },
      ]),
      logger: createLogger('silent'),
      metrics: createMetrics(),
      maxJsonBodyBytes: 1024 * 1024,
    });
    const submit = async (key: string, count: number, label: string) => {
      const body = Array.from({ length: count }, (_, i) => JSON.stringify({ content: `${label} memory ${i}` })).join('\n');
      const response = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
        body,
      });
      expect(response.status).toBe(202);
      return ((await response.json()) as { batch_id: string }).batch_id;
    };
    const until = async (what: string, condition: () => boolean) => {
      for (let i = 0; i < 500 && !condition(); i += 1) await new Promise((r) => setTimeout(r, 10));
      if (!condition()) throw new Error(`timed out waiting for ${what}`);
    };

    for (let i = 0; i < 3; i += 1) await submit(keyA, 300, `a${i}`);
    // 4 slots, tenant cap 3: A's first batch, alone when it began, holds three (all held by the sink).
    await until("tenant A's first segments", () => starts.length >= 3);
    expect(new Set(starts.map((s) => s.key)).size).toBe(1);
    expect(orchestrator.segmentsRunning).toEqual({ total: 3, tenants: { 'org-a': 3 } });

    await submit(keyB, 10, 'b');
    await until("tenant B's segment", () => starts.length >= 4);
    const bStart = starts[3]!;
    expect(bStart.key).not.toBe(starts[0]!.key);
    expect(bStart.segment).toBe(0);
    expect(orchestrator.segmentsRunning).toEqual({ total: 4, tenants: { 'org-a': 3, 'org-b': 1 } });

    sink.release();
    await orchestrator.idle();
    // Every segment ran once, and A's batches moved together: when the first of them had started all 30 segments,
    // the other two had started at least 25 each (first come, first served would give 30, 0, 0).
    expect(starts).toHaveLength(91);
    const perBatch = new Map<string, number>();
    for (const start of starts.filter((s) => s.key !== bStart.key)) {
      perBatch.set(start.key, (perBatch.get(start.key) ?? 0) + 1);
      if (perBatch.get(start.key) === 30) break;
    }
    expect(Math.min(...perBatch.values())).toBeGreaterThanOrEqual(25);
    expect(sink.memories.size).toBe(910);
  });
});
