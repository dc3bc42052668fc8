// MemorySink on Parse: one `Memory` object per item, created through Parse's `/batch` endpoint in groups of at most
// 50. `memoryId` (derived from batch and index) and (batchId, index) are unique, so a retried or concurrent segment
// gets "duplicate value" (137) for what exists already, which counts as stored.
//
// Upsert by external id (the MemorySink port) is not implemented on Parse yet: every stored item reports `created`
// under its batch-derived id, and a re-imported external id is stored again. The SQLite sink implements it.
//
// Per-operation errors are sorted into the item's own fault (Parse refused this object: an outcome) and everything
// else (the database is away, the server failed: thrown, so the segment is retried and no item is counted failed for
// a fault that was not its own).
import type { MemoryAttributes, MemoryRecord } from '../../domain/memory.ts';
import { emptyWriteCounts, type WriteCounts, writeOutcome } from '../../domain/progress.ts';
import type { ItemOutcome, MemorySink, StoredMemoryRef } from '../../ports/memory-sink.ts';
import { OrganizationRoles, tenantAcl } from './acl.ts';
import {
  type BatchOperation,
  type BatchOperationResult,
  maxBatchOperations,
  type ParseConnection,
  ParseErrorCode,
  useMasterKey,
} from './connection.ts';
import { parseClasses } from './schema.ts';

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

export interface ParseMemorySinkOptions {
  /** `/batch` calls in flight at once for one segment. */
  concurrency?: number;
}

export class ParseMemorySink implements MemorySink {
  readonly #connection: ParseConnection;
  readonly #Parse: ParseConnection['Parse'];
  readonly #roles: OrganizationRoles;
  readonly #concurrency: number;

  constructor(connection: ParseConnection, options: ParseMemorySinkOptions = {}) {
    this.#connection = connection;
    this.#Parse = connection.Parse;
    this.#roles = new OrganizationRoles(connection);
    this.#concurrency = options.concurrency ?? 4;
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
    const rows = await new this.#Parse.Query(parseClasses.memory)
      .equalTo('batchId', batchKey)
      .greaterThan('index', afterIndex)
      .ascending('index')
      .select('index', 'memoryId', 'externalId', 'attributes')
      .limit(limit)
      .find(useMasterKey);
    return rows.map((row) => ({
      index: row.get('index') as number,
      memoryId: row.get('memoryId') as string,
      externalId: (row.get('externalId') as string | undefined) ?? null,
      outcome: writeOutcome.created,
      version: 1,
      attributes: (row.get('attributes') as MemoryAttributes | undefined) ?? null,
    }));
  }

  async countByBatch(batchKey: string): Promise<number> {
    return new this.#Parse.Query(parseClasses.memory).equalTo('batchId', batchKey).count(useMasterKey);
  }

  async countOutcomes(batchKey: string): Promise<WriteCounts> {
    return { ...emptyWriteCounts(), created: await this.countByBatch(batchKey) };
  }

  async check(): Promise<void> {
    await new this.#Parse.Query(parseClasses.memory).select('memoryId').first(useMasterKey);
  }

  async close(): Promise<void> {}

  async #writeGroup(records: MemoryRecord[]): Promise<ItemOutcome[]> {
    const operations: BatchOperation[] = records.map((record) => ({
      method: 'POST',
      path: `/classes/${parseClasses.memory}`,
      body: memoryObject(record),
    }));
    const results = await this.#connection.batch(operations);
    const backendFailure = results.find(
      (result) => result.error && result.error.code !== ParseErrorCode.duplicateValue && !itemFaults.has(result.error.code),
    );
    if (backendFailure?.error) {
      throw new this.#Parse.Error(backendFailure.error.code, `writing memories failed: ${backendFailure.error.error}`);
    }
    return records.map((record, at) => outcomeOf(record, results[at]!));
  }
}

function memoryObject(record: MemoryRecord): Record<string, unknown> {
  const body: Record<string, unknown> = {
    memoryId: record.memoryId,
    batchId: record.batchKey,
    index: record.index,
    content: record.content,
    contentHash: record.contentHash,
    ...record.tenant,
    ACL: tenantAcl(record.tenant),
  };
  if (record.type !== null) body.type = record.type;
  if (record.metadata !== null) body.metadata = record.metadata;
  if (record.externalId !== null) body.externalId = record.externalId;
  if (record.attributes !== null) body.attributes = record.attributes;
  return body;
}

function outcomeOf(record: MemoryRecord, result: BatchOperationResult): ItemOutcome {
  if (!result.error || result.error.code === ParseErrorCode.duplicateValue) {
    return { index: record.index, ok: true, memoryId: record.memoryId, outcome: writeOutcome.created };
  }
  return { index: record.index, ok: false, error: `Parse refused the memory (${result.error.code}): ${result.error.error}` };
}
