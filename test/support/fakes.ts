// In-memory adapters for unit tests of use cases. They keep the port guarantees (the contract suites prove it).
import type { Batch, BatchStatus } from '../../src/domain/batch.ts';
import { applyPatch, finalStatuses, type IllegalTransition, isFinal, unfinishedStatuses } from '../../src/domain/lifecycle.ts';
import type { MemoryRecord } from '../../src/domain/memory.ts';
import { addOutcome, addRecovered, addWriteCounts, checkSegmentOutcome, type Counts, emptyWriteCounts, writeCountsOfOutcomes, type SegmentOutcome, type WriteCounts, writeOutcome, type WriteOutcomeName } from '../../src/domain/progress.ts';
import {
  type BatchListQuery,
  type BatchPatch,
  type BatchRepository,
  InvalidCursorError,
  type ItemError,
  type Page,
  type RedriveOutcome,
  type SegmentRecord,
} from '../../src/ports/batch-repository.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../src/ports/memory-sink.ts';
import type { Orchestrator, RunOptions } from '../../src/ports/orchestrator.ts';
import { createHash } from 'node:crypto';
import { PayloadChecksumError, PayloadConflictError, type PayloadObjectInfo, type PayloadStore } from '../../src/ports/payload-store.ts';
import type { DeliveryAttempt, WebhookMessage, WebhookNotifier } from '../../src/ports/webhook-notifier.ts';

const copy = <T>(value: T): T => structuredClone(value);

export class MemoryBatchRepository implements BatchRepository {
  readonly batches = new Map<string, Batch>();
  readonly segments = new Map<string, Map<number, SegmentRecord>>();
  readonly errors = new Map<string, Map<number, ItemError>>();

  async create(batch: Batch) {
    const existing = this.batches.get(batch.key);
    if (existing) return { created: false, batch: copy(existing) };
    this.batches.set(batch.key, copy(batch));
    return { created: true, batch: copy(batch) };
  }
  async get(key: string) {
    const batch = this.batches.get(key);
    return batch ? copy(batch) : undefined;
  }
  async update(key: string, expectedVersion: number, patch: BatchPatch): Promise<Batch | 'conflict' | IllegalTransition> {
    const batch = this.batches.get(key);
    if (!batch || batch.version !== expectedVersion) return 'conflict';
    const applied = applyPatch(batch, copy(patch));
    if (!applied.ok) return applied.error;
    const next = applied.value;
    this.batches.set(key, next);
    return copy(next);
  }
  async recordSegment(key: string, outcome: SegmentOutcome, itemErrors: ItemError[], workerId: string): Promise<{ applied: boolean; counts: Counts }> {
    checkSegmentOutcome(outcome);
    const batch = this.batches.get(key);
    if (!batch) throw new Error(`batch ${key} does not exist`);
    if (isFinal(batch.status)) return { applied: false, counts: { ...batch.counts } };
    const segments = this.segments.get(key) ?? new Map<number, SegmentRecord>();
    this.segments.set(key, segments);
    if (segments.has(outcome.segment)) return { applied: false, counts: { ...batch.counts } };
    segments.set(outcome.segment, { ...copy(outcome), workerId, recordedAt: new Date().toISOString() });
    const errors = this.errors.get(key) ?? new Map<number, ItemError>();
    this.errors.set(key, errors);
    for (const e of itemErrors) if (!errors.has(e.index)) errors.set(e.index, { ...e });
    batch.counts = addOutcome(batch.counts, outcome);
    if (batch.written) batch.written = addWriteCounts(batch.written, outcome.written);
    return { applied: true, counts: { ...batch.counts } };
  }
  /** `${key}\0${redrive}` -> segments recorded in that redrive. */
  readonly redrives = new Map<string, Set<number>>();
  async recordRedrive(key: string, outcome: RedriveOutcome, _workerId: string): Promise<{ applied: boolean; counts: Counts }> {
    const batch = this.batches.get(key);
    if (!batch) throw new Error(`batch ${key} does not exist`);
    if (isFinal(batch.status)) return { applied: false, counts: { ...batch.counts } };
    const done = this.redrives.get(`${key}\0${outcome.redrive}`) ?? new Set<number>();
    this.redrives.set(`${key}\0${outcome.redrive}`, done);
    if (done.has(outcome.segment)) return { applied: false, counts: { ...batch.counts } };
    done.add(outcome.segment);
    const errors = this.errors.get(key) ?? new Map<number, ItemError>();
    const moved = outcome.recovered.filter((item) => errors.delete(item.index));
    for (const e of outcome.failedAgain) if (errors.has(e.index)) errors.set(e.index, { ...e });
    batch.counts = addRecovered(batch.counts, moved.length);
    if (batch.written) batch.written = addWriteCounts(batch.written, writeCountsOfOutcomes(moved.map((item) => item.outcome)));
    return { applied: true, counts: { ...batch.counts } };
  }
  async listRedriveSegments(key: string, redrive: number) {
    return [...(this.redrives.get(`${key}\0${redrive}`) ?? [])].sort((a, b) => a - b);
  }
  async listSegments(key: string) {
    return [...(this.segments.get(key)?.values() ?? [])].sort((a, b) => a.segment - b.segment).map(copy);
  }
  async listErrors(key: string, afterIndex: number, limit: number) {
    return [...(this.errors.get(key)?.values() ?? [])].filter((e) => e.index > afterIndex).sort((a, b) => a.index - b.index).slice(0, limit).map(copy);
  }
  async list(organization: string, query: BatchListQuery): Promise<Page<Batch>> {
    const sorted = [...this.batches.values()]
      .filter((b) => b.tenant.organization === organization && (!query.status || b.status === query.status))
      .filter((b) => Object.entries(query.metadata ?? {}).every(([name, value]) => b.metadata !== undefined && Object.hasOwn(b.metadata, name) && b.metadata[name] === value))
      .sort((a, b) => (a.createdAt === b.createdAt ? b.key.localeCompare(a.key) : b.createdAt.localeCompare(a.createdAt)));
    let start = 0;
    if (query.cursor) {
      start = sorted.findIndex((b) => b.key === query.cursor) + 1;
      if (start === 0) throw new InvalidCursorError('cursor is not valid');
    }
    const page = sorted.slice(start, start + query.limit);
    const more = start + query.limit < sorted.length;
    return { items: page.map(copy), nextCursor: more ? page.at(-1)!.key : null };
  }
  async delete(key: string) {
    this.segments.delete(key);
    for (const redrive of [...this.redrives.keys()]) if (redrive.startsWith(`${key}\0`)) this.redrives.delete(redrive);
    this.errors.delete(key);
    this.expired.delete(key);
    return this.batches.delete(key);
  }
  async listNeedingWork(maxWebhookAttempts: number) {
    return [...this.batches.values()]
      .filter((b) =>
        unfinishedStatuses.includes(b.status) ||
        (b.webhook.url !== null && !b.webhook.delivered && b.webhook.gaveUp !== true && b.webhook.attempts < maxWebhookAttempts))
      .map((b) => b.key);
  }
  async backlog() {
    const unfinished = [...this.batches.values()].filter((b) => unfinishedStatuses.includes(b.status));
    const byStatus: Partial<Record<BatchStatus, number>> = {};
    for (const b of unfinished) byStatus[b.status] = (byStatus[b.status] ?? 0) + 1;
    return { byStatus, oldestCreatedAt: unfinished.map((b) => b.createdAt).sort()[0] ?? null };
  }
  readonly expired = new Set<string>();
  async listExpiredPayloads(completedBefore: string, limit: number) {
    return [...this.batches.values()]
      .filter((b) => finalStatuses.includes(b.status) && b.completedAt !== null)
      .filter((b) => b.completedAt! <= completedBefore && !this.expired.has(b.key))
      .sort((a, b) => a.completedAt!.localeCompare(b.completedAt!) || a.key.localeCompare(b.key))
      .slice(0, limit)
      .map((b) => ({ key: b.key, prefix: b.payload.prefix, completedAt: b.completedAt! }));
  }
  async referencedPrefixes(prefixes: string[]) {
    const pointed = new Set([...this.batches.values()].map((b) => b.payload.prefix));
    return new Set(prefixes.filter((prefix) => pointed.has(prefix)));
  }
  async markPayloadExpired(key: string, _expiredAt: string) {
    this.expired.add(key);
  }
  async prepare() {
    return undefined;
  }
  async check() {}
  async close() {}
}

export class MemoryPayloadStore implements PayloadStore {
  readonly objects = new Map<string, Uint8Array>();
  readonly checksums = new Map<string, string>();
  /** When each object was written; a test ages a folder by moving these back. */
  readonly writtenAt = new Map<string, Date>();
  async put(key: string, body: Uint8Array, info: PayloadObjectInfo) {
    const existing = this.objects.get(key);
    if (existing && !Buffer.from(existing).equals(Buffer.from(body))) throw new PayloadConflictError(`${key} holds different bytes`);
    if (!existing) this.writtenAt.set(key, new Date());
    this.objects.set(key, Uint8Array.from(body));
    this.checksums.set(key, info.sha256Hex);
  }
  async get(key: string) {
    const body = this.objects.get(key);
    if (!body) return undefined;
    const actual = createHash('sha256').update(body).digest('hex');
    if (actual !== this.checksums.get(key)) throw new PayloadChecksumError(`SHA-256 checksum mismatch for ${key}`);
    return Uint8Array.from(body);
  }
  async prepare() {
    return undefined;
  }
  async deletePrefix(prefix: string) {
    const doomed = [...this.objects.keys()].filter((k) => k.startsWith(prefix + '/'));
    for (const key of doomed) {
      this.objects.delete(key);
      this.checksums.delete(key);
      this.writtenAt.delete(key);
    }
    return doomed.length;
  }
  async *folders() {
    const newest = new Map<string, Date>();
    for (const key of this.objects.keys()) {
      const slash = key.lastIndexOf('/');
      if (slash <= 0) continue;
      const prefix = key.slice(0, slash);
      const written = this.writtenAt.get(key)!;
      const known = newest.get(prefix);
      if (!known || written > known) newest.set(prefix, written);
    }
    for (const [prefix, lastWrittenAt] of newest) yield { prefix, lastWrittenAt };
  }
  async check() {}
  async close() {}
}

export class MemorySinkFake implements MemorySink {
  /** Each memory by id, as its latest write left it (it keeps the batch and index that created it). */
  readonly memories = new Map<string, MemoryRecord>();
  readonly #versions = new Map<string, number>();
  readonly #byExternalId = new Map<string, string>();
  readonly #writes = new Map<string, { batchKey: string; index: number; memoryId: string; outcome: WriteOutcomeName }>();

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    return records.map((r): ItemOutcome => {
      const writeKey = `${r.batchKey}\0${r.index}`;
      const earlier = this.#writes.get(writeKey);
      if (earlier) return { index: r.index, ok: true, memoryId: earlier.memoryId, outcome: earlier.outcome };
      const externalKey = r.externalId === null ? undefined : `${r.tenant.organization}\0${r.tenant.namespace}\0${r.externalId}`;
      const existingId = externalKey === undefined ? undefined : this.#byExternalId.get(externalKey);
      let memoryId = r.memoryId;
      let outcome: WriteOutcomeName = writeOutcome.created;
      if (existingId === undefined) {
        if (!this.memories.has(r.memoryId)) {
          this.memories.set(r.memoryId, copy(r));
          this.#versions.set(r.memoryId, 1);
        }
        if (externalKey !== undefined) this.#byExternalId.set(externalKey, r.memoryId);
      } else {
        memoryId = existingId;
        const stored = this.memories.get(existingId)!;
        if (stored.fingerprint === r.fingerprint || r.onExisting === 'skip') {
          outcome = writeOutcome.unchanged;
        } else {
          this.memories.set(existingId, { ...copy(r), memoryId: existingId, batchKey: stored.batchKey, index: stored.index });
          this.#versions.set(existingId, (this.#versions.get(existingId) ?? 1) + 1);
          outcome = writeOutcome.updated;
        }
      }
      this.#writes.set(writeKey, { batchKey: r.batchKey, index: r.index, memoryId, outcome });
      return { index: r.index, ok: true, memoryId, outcome };
    });
  }
  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    return [...this.#writes.values()]
      .filter((w) => w.batchKey === batchKey && w.index > afterIndex)
      .sort((a, b) => a.index - b.index)
      .slice(0, limit)
      .map((w) => {
        const m = this.memories.get(w.memoryId)!;
        return { index: w.index, memoryId: w.memoryId, externalId: m.externalId, outcome: w.outcome, version: this.#versions.get(w.memoryId) ?? 1, attributes: m.attributes };
      });
  }
  async countOutcomes(batchKey: string): Promise<WriteCounts> {
    const counts = emptyWriteCounts();
    for (const w of this.#writes.values()) if (w.batchKey === batchKey) counts[w.outcome] += 1;
    return counts;
  }
  async prepare() {
    return undefined;
  }
  async check() {}
  async close() {}
}

/** Records starts and cancels; runs nothing (the test drives the use cases itself). */
export class RecordingOrchestrator implements Orchestrator {
  readonly started: string[] = [];
  readonly cancelled: string[] = [];
  readonly redelivered: string[] = [];
  /** Every start and redelivery in order, with the options it was given (the organization it is scheduled by). */
  readonly runs: { method: 'start' | 'redeliver'; batchKey: string; options: RunOptions & { redrive?: number } }[] = [];
  async start(batchKey: string, options: RunOptions & { redrive?: number } = {}) {
    this.runs.push({ method: 'start', batchKey, options });
    if (!this.started.includes(batchKey)) this.started.push(batchKey);
    return { workflowId: `batch-${batchKey}` };
  }
  async cancel(batchKey: string) {
    this.cancelled.push(batchKey);
  }
  async redeliver(batchKey: string, options: RunOptions = {}) {
    this.runs.push({ method: 'redeliver', batchKey, options });
    this.redelivered.push(batchKey);
  }
  async check() {}
  async close() {}
}

export class ScriptedNotifier implements WebhookNotifier {
  readonly sent: WebhookMessage[] = [];
  readonly answers: DeliveryAttempt[];
  constructor(answers: DeliveryAttempt[] = []) {
    this.answers = answers;
  }
  async send(message: WebhookMessage): Promise<DeliveryAttempt> {
    this.sent.push(message);
    return this.answers.shift() ?? { delivered: true, status: 204 };
  }
}
