// MemorySink on Parse: one `Memory` object per memory, unique per tenant and external id, written through Parse's
// `/batch` endpoint in groups of at most 50, and one `MemoryWrite` object per batch item naming the memory it wrote
// and how (created, updated, unchanged). Parse has no transactions, so the unique indexes decide races: a create
// that meets "duplicate value" (137) on the external id lost to a concurrent writer and is decided again against the
// memory that won; an update increments `version` atomically, so the version counts the updates applied. A memory
// remembers the batch item that wrote it last (`writtenBy`), so an item retried after its write but before its
// `MemoryWrite` reports what it did rather than `unchanged`.
//
// Per-operation errors are sorted into the item's own fault (Parse refused this object: an outcome) and everything
// else (the database is away, the server failed: thrown, so the segment is retried and no item is counted failed for
// a fault that was not its own).
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import { emptyWriteCounts, type WriteCounts, writeOutcome, type WriteOutcomeName, writeOutcomes } from '../../domain/progress.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { OrganizationRoles, tenantAcl } from './acl.ts';
import {
  type BatchOperation,
  maxBatchOperations,
  type ParseConnection,
  ParseErrorCode,
  useMasterKey,
} from './connection.ts';
import { parseClasses } from './schema.ts';
import { ParseSchemaSetup } from './schema-setup.ts';

/** Parse error codes that mean "this object is not acceptable", not "the backend failed". */
const itemFaults = new Set([
  102, // INVALID_QUERY
  105, // INVALID_KEY_NAME, e.g. a metadata key holding '$' or '.'
  107, // INVALID_JSON
  111, // INCORRECT_TYPE
  116, // OBJECT_TOO_LARGE
  121, // INVALID_NESTED_KEY
  142, // VALIDATION_ERROR, e.g. a beforeSave trigger refusing it
]);

type ParseObject = InstanceType<ParseConnection['Parse']['Object']>;

export interface ParseMemorySinkOptions {
  /** `/batch` calls in flight at once for one segment. */
  concurrency?: number;
  /** The preparation shared with the other Parse adapters of this process (default: its own). */
  schema?: ParseSchemaSetup;
}

export class ParseMemorySink implements MemorySink {
  readonly #connection: ParseConnection;
  readonly #Parse: ParseConnection['Parse'];
  readonly #roles: OrganizationRoles;
  readonly #concurrency: number;

  readonly #schema: ParseSchemaSetup;

  constructor(connection: ParseConnection, options: ParseMemorySinkOptions = {}) {
    this.#connection = connection;
    this.#Parse = connection.Parse;
    this.#roles = new OrganizationRoles(connection);
    this.#concurrency = options.concurrency ?? 4;
    this.#schema = options.schema ?? new ParseSchemaSetup(connection);
  }

  /** Its classes and indexes are prepared with the other Parse classes (`migrateParse`), once. */
  prepare(): Promise<undefined> {
    return this.#schema.prepare();
  }

  async writeSegment(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    for (const organization of new Set(records.map((r) => r.tenant.organization))) await this.#roles.ensure(organization);
    const groups: MemoryRecord[][] = [];
    for (let start = 0; start < records.length; start += maxBatchOperations) {
      groups.push(records.slice(start, start + maxBatchOperations));
    }
    const outcomes: ItemOutcome[][] = new Array(groups.length);
    let next = 0;
    const worker = async () => {
      while (next < groups.length) {
        const at = next++;
        outcomes[at] = await this.#writeGroup(groups[at]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, groups.length) }, worker));
    return outcomes.flat();
  }

  async listByBatch(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    const writes = await new this.#Parse.Query(parseClasses.memoryWrite)
      .equalTo('batchId', batchKey)
      .greaterThan('index', afterIndex)
      .ascending('index')
      .limit(limit)
      .find(useMasterKey);
    if (writes.length === 0 && (await this.#hasNoWrites(batchKey))) return this.#listUnrecorded(batchKey, afterIndex, limit);
    const memoryIds = [...new Set(writes.map((w) => w.get('memoryId') as string))];
    const memories = new Map<string, ParseObject>();
    for (let start = 0; start < memoryIds.length; start += 1000) {
      const rows = await new this.#Parse.Query(parseClasses.memory)
        .containedIn('memoryId', memoryIds.slice(start, start + 1000))
        .select('memoryId', 'externalId', 'attributes', 'version')
        .limit(1000)
        .find(useMasterKey);
      for (const row of rows) memories.set(row.get('memoryId') as string, row);
    }
    return writes.map((write) => {
      const memory = memories.get(write.get('memoryId') as string);
      return {
        index: write.get('index') as number,
        memoryId: write.get('memoryId') as string,
        externalId: (memory?.get('externalId') as string | undefined) ?? null,
        outcome: write.get('outcome') as WriteOutcomeName,
        version: (memory?.get('version') as number | undefined) ?? 1,
        attributes: (memory?.get('attributes') as MemoryAttributes | undefined) ?? null,
      };
    });
  }

  async countOutcomes(batchKey: string): Promise<WriteCounts> {
    const counts = emptyWriteCounts();
    await Promise.all(
      writeOutcomes.map(async (outcome) => {
        counts[outcome] = await new this.#Parse.Query(parseClasses.memoryWrite)
          .equalTo('batchId', batchKey)
          .equalTo('outcome', outcome)
          .count(useMasterKey);
      }),
    );
    // Memories written before the MemoryWrite class existed have no outcome row: they were created.
    if (counts.created + counts.updated + counts.unchanged === 0) {
      counts.created = await new this.#Parse.Query(parseClasses.memory).equalTo('batchId', batchKey).count(useMasterKey);
    }
    return counts;
  }

  async #hasNoWrites(batchKey: string): Promise<boolean> {
    return !(await new this.#Parse.Query(parseClasses.memoryWrite).equalTo('batchId', batchKey).first(useMasterKey));
  }

  /** A batch stored before `MemoryWrite` existed: each of its memories was created by the item that wrote it. */
  async #listUnrecorded(batchKey: string, afterIndex: number, limit: number): Promise<StoredMemoryRef[]> {
    const rows = await new this.#Parse.Query(parseClasses.memory)
      .equalTo('batchId', batchKey)
      .greaterThan('index', afterIndex)
      .ascending('index')
      .select('index', 'memoryId', 'externalId', 'attributes', 'version')
      .limit(limit)
      .find(useMasterKey);
    return rows.map((row) => ({
      index: row.get('index') as number,
      memoryId: row.get('memoryId') as string,
      externalId: (row.get('externalId') as string | undefined) ?? null,
      outcome: writeOutcome.created,
      version: (row.get('version') as number | undefined) ?? 1,
      attributes: (row.get('attributes') as MemoryAttributes | undefined) ?? null,
    }));
  }

  async check(): Promise<void> {
    await new this.#Parse.Query(parseClasses.memory).select('memoryId').first(useMasterKey);
  }

  async close(): Promise<void> {}

  /** Writes up to 50 records: decides each against what is stored, writes, then records each item's outcome. */
  async #writeGroup(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    const batchKey = records[0]!.batchKey;
    const earlier = await this.#earlierWrites(batchKey, records);
    const outcomes = new Map<number, ItemOutcome>();
    for (const record of records) {
      const write = earlier.get(record.index);
      if (write) outcomes.set(record.index, { index: record.index, ok: true, ...write });
    }
    let pending = records.filter((r) => !outcomes.has(r.index));
    // A create that loses a race is decided again against the winner; a few rounds settle any interleaving.
    for (let round = 0; pending.length > 0; round += 1) {
      if (round === 5) throw new this.#Parse.Error(ParseErrorCode.duplicateValue, 'writing memories kept racing other writers');
      const existing = await this.#existing(pending);
      const plans = pending.map((record) => plan(record, existing.get(keyOf(record))));
      const writes = plans.filter((p) => p.operation !== undefined);
      const results = await this.#connection.batch(writes.map((p) => p.operation!));
      const backendFailure = results.find(
        (result) => result.error && result.error.code !== ParseErrorCode.duplicateValue && !itemFaults.has(result.error.code),
      );
      if (backendFailure?.error) {
        throw new this.#Parse.Error(backendFailure.error.code, `writing memories failed: ${backendFailure.error.error}`);
      }
      const resultOf = new Map(writes.map((p, at) => [p.record.index, results[at]!]));
      const again: MemoryRecord[] = [];
      for (const p of plans) {
        const result = resultOf.get(p.record.index);
        if (result?.error?.code === ParseErrorCode.duplicateValue) {
          // Without an external id only the derived memory id can collide: an earlier attempt stored it.
          if (p.record.externalId === null) outcomes.set(p.record.index, { index: p.record.index, ok: true, memoryId: p.record.memoryId, outcome: writeOutcome.created });
          else again.push(p.record);
        } else if (result?.error) {
          outcomes.set(p.record.index, {
            index: p.record.index,
            ok: false,
            error: `Parse refused the memory (${result.error.code}): ${result.error.error}`,
          });
        } else {
          outcomes.set(p.record.index, { index: p.record.index, ok: true, memoryId: p.memoryId, outcome: p.outcome });
        }
      }
      pending = again;
    }
    return this.#recordWrites(batchKey, records.map((r) => outcomes.get(r.index)!));
  }

  /** The outcomes already recorded for these items (a retried segment). */
  async #earlierWrites(batchKey: string, records: MemoryRecord[]) {
    const rows = await new this.#Parse.Query(parseClasses.memoryWrite)
      .equalTo('batchId', batchKey)
      .containedIn('index', records.map((r) => r.index))
      .limit(records.length)
      .find(useMasterKey);
    return new Map(rows.map((row) => [row.get('index') as number, { memoryId: row.get('memoryId') as string, outcome: row.get('outcome') as WriteOutcomeName }]));
  }

  /** The stored memories these records name by external id, keyed by tenant and external id. */
  async #existing(records: MemoryRecord[]): Promise<Map<string, StoredMemory>> {
    const found = new Map<string, StoredMemory>();
    const byTenant = new Map<string, MemoryRecord[]>();
    for (const record of records) {
      if (record.externalId === null) continue;
      const tenantKey = `${record.tenant.organization}\0${record.tenant.namespace}`;
      byTenant.set(tenantKey, [...(byTenant.get(tenantKey) ?? []), record]);
    }
    for (const group of byTenant.values()) {
      const { organization, namespace } = group[0]!.tenant;
      const rows = await new this.#Parse.Query(parseClasses.memory)
        .equalTo('organization', organization)
        .equalTo('namespace', namespace)
        .containedIn('externalId', group.map((r) => r.externalId))
        .select('memoryId', 'externalId', 'fingerprint', 'writtenBy')
        .limit(group.length)
        .find(useMasterKey);
      for (const row of rows) {
        found.set(`${organization}\0${namespace}\0${row.get('externalId') as string}`, {
          objectId: row.id!,
          memoryId: row.get('memoryId') as string,
          fingerprint: (row.get('fingerprint') as string | undefined) ?? null,
          writtenBy: (row.get('writtenBy') as string | undefined) ?? null,
        });
      }
    }
    return found;
  }

  /** Records each stored item's outcome once; a concurrent run of the same segment that recorded first wins. */
  async #recordWrites(batchKey: string, outcomes: ItemOutcome[]): Promise<ItemOutcome[]> {
    const stored = outcomes.filter((o): o is Extract<ItemOutcome, { ok: true }> => o.ok);
    const results = await this.#connection.batch(
      stored.map((o) => ({
        method: 'POST' as const,
        path: `/classes/${parseClasses.memoryWrite}`,
        body: { batchId: batchKey, index: o.index, memoryId: o.memoryId, outcome: o.outcome, ACL: {} },
      })),
    );
    const failure = results.find((r) => r.error && r.error.code !== ParseErrorCode.duplicateValue);
    if (failure?.error) throw new this.#Parse.Error(failure.error.code, `recording memory writes failed: ${failure.error.error}`);
    if (!results.some((r) => r.error)) return outcomes;
    const recorded = await this.#earlierWrites(batchKey, stored.map((o) => ({ index: o.index }) as MemoryRecord));
    return outcomes.map((o) => {
      const first = o.ok ? recorded.get(o.index) : undefined;
      return first ? { index: o.index, ok: true, ...first } : o;
    });
  }
}

interface StoredMemory {
  objectId: string;
  memoryId: string;
  fingerprint: string | null;
  writtenBy: string | null;
}

interface WritePlan {
  record: MemoryRecord;
  memoryId: string;
  outcome: WriteOutcomeName;
  operation?: BatchOperation | undefined;
}

const keyOf = (r: MemoryRecord) => `${r.tenant.organization}\0${r.tenant.namespace}\0${r.externalId}`;
const writerOf = (r: MemoryRecord) => `${r.batchKey}:${r.index}`;

/** What writing `record` does, given the memory stored under its external id (if any). */
function plan(record: MemoryRecord, existing: StoredMemory | undefined): WritePlan {
  if (!existing) {
    return {
      record,
      memoryId: record.memoryId,
      outcome: writeOutcome.created,
      operation: { method: 'POST', path: `/classes/${parseClasses.memory}`, body: memoryObject(record) },
    };
  }
  const memoryId = existing.memoryId;
  // This item wrote it already (a retry after the write, before its outcome was recorded).
  if (existing.writtenBy === writerOf(record) && existing.fingerprint === record.fingerprint) {
    return { record, memoryId, outcome: memoryId === record.memoryId ? writeOutcome.created : writeOutcome.updated };
  }
  if (existing.fingerprint === record.fingerprint || record.onExisting === 'skip') {
    return { record, memoryId, outcome: writeOutcome.unchanged };
  }
  const body: Record<string, unknown> = {
    content: record.content,
    contentHash: record.contentHash,
    fingerprint: record.fingerprint,
    writtenBy: writerOf(record),
    version: { __op: 'Increment', amount: 1 },
    type: record.type ?? { __op: 'Delete' },
    metadata: record.metadata ?? { __op: 'Delete' },
    attributes: record.attributes ?? { __op: 'Delete' },
  };
  return {
    record,
    memoryId,
    outcome: writeOutcome.updated,
    operation: { method: 'PUT', path: `/classes/${parseClasses.memory}/${existing.objectId}`, body },
  };
}

function memoryObject(record: MemoryRecord): Record<string, unknown> {
  const body: Record<string, unknown> = {
    memoryId: record.memoryId,
    batchId: record.batchKey,
    index: record.index,
    content: record.content,
    contentHash: record.contentHash,
    fingerprint: record.fingerprint,
    version: 1,
    writtenBy: writerOf(record),
    ...record.tenant,
    ACL: tenantAcl(record.tenant),
  };
  if (record.type !== null) body.type = record.type;
  if (record.metadata !== null) body.metadata = record.metadata;
  if (record.externalId !== null) body.externalId = record.externalId;
  if (record.attributes !== null) body.attributes = record.attributes;
  return body;
}
