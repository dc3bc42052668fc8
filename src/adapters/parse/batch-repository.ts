// BatchRepository on Parse Server: one `BatchMemoryRequest` per batch, its committed updates in `BatchVersion`, its
// progress ledger in `BatchSegment`, its item errors in `BatchItemError`.
//
// Parse offers no conditional update and no usable transaction (a `/batch` with `transaction: true` parks its session
// on Parse Server's one shared DatabaseController, so concurrent requests would run inside each other's transaction).
// The one atomic test-and-set it has is inserting a row under a unique index. Both guarantees rest on it:
//
// - Compare-and-set (`update`): committing version N+1 means inserting the `BatchVersion` row (batchId, N+1) holding
//   the full new state. Of many writers of the same version exactly one insert succeeds; the rest get a duplicate
//   key and answer 'conflict'. The state columns of `BatchMemoryRequest` are a projection of the newest version row:
//   written after the commit, and re-written until no newer version exists (a slow writer may land an older state
//   after a newer one; it then finds the newer version and writes that). `get` reads the newest version row itself,
//   so it never sees a lagging projection, and repairs one it finds (after a crash between commit and projection).
// - Ledger (`recordSegment`): recording a segment is inserting its `BatchSegment` row (batchId, segment); a repeat
//   gets a duplicate key and changes nothing. The counts are the sums over the ledger rows (one aggregate query), so
//   there is no second write that a crash could separate from the first: counts are exact under retries, duplicates
//   and crashes. `processedCount`/`successCount`/`failCount` on the batch row are a projection of those sums,
//   re-written until stable, for list pages and for people looking at the class in Parse Dashboard. Item errors are
//   stored before the ledger row (idempotent per item), so a recorded segment always has its errors.
//   A segment's write outcomes (created/updated/unchanged) are fields of its ledger row, summed by the same query as
//   `succeeded`, so a read never shows one without the other; `createdCount`/`updatedCount`/`unchangedCount` on the
//   batch row are their projection, and their presence marks a batch whose ledger keeps outcomes (a batch stored by an
//   earlier version has none, and reads `written: null`).
import type { Codec } from '../../domain/codec.ts';
import { type Batch, type BatchStatus, isFinal, type Tenant, type WebhookState } from '../../domain/batch.ts';
import { applyPatch, finalStatuses, type IllegalTransition, unfinishedStatuses } from '../../domain/lifecycle.ts';
import type { UploadState } from '../../domain/invalid-items.ts';
import { checkSegmentOutcome, type Counts, type SegmentOutcome, type WriteCounts, writeCountsOfOutcomes, writeOutcomes } from '../../domain/progress.ts';
import {
  type Backlog,
  type BatchListQuery,
  type BatchPatch,
  type BatchRepository,
  type ExpiredPayload,
  InvalidCursorError,
  type ItemError,
  type Page,
  type RedriveOutcome,
  type SegmentRecord,
} from '../../ports/batch-repository.ts';
import { OrganizationRoles, tenantAcl } from './acl.ts';
import {
  type BatchOperation,
  isParseError,
  maxBatchOperations,
  type ParseConnection,
  ParseErrorCode,
  useMasterKey,
} from './connection.ts';
import { parseClasses } from './schema.ts';
import { ParseSchemaSetup } from './schema-setup.ts';

/** How many item errors the batch row keeps as a sample in `errors`; all of them are in `BatchItemError`. */
export const errorSampleSize = 100;
/** Rounds a projection is re-written before giving up (the next `get` repairs it). */
const projectionRounds = 20;
const pageSize = 1000;

type ParseObject = InstanceType<ParseConnection['Parse']['Object']>;

/** The part of a batch that `update` changes: the snapshot each `BatchVersion` row holds. */
interface MutableState {
  status: BatchStatus;
  startedAt: string | null;
  completedAt: string | null;
  workflowId: string | null;
  webhook: WebhookState;
  error: string | null;
  /**
   * An upload that processing overlaps (`invalid_items: "record"`): its segments and total grow under the same
   * compare-and-set as the status. Absent for a batch whose upload was complete when it was created.
   */
  upload?: UploadState & { segments: number; rawBytes: number; storedBytes: number };
  /** Absent in versions written before redrives existed (none). */
  redrives?: number;
}

function mutableState(batch: Batch): MutableState {
  const { segments, rawBytes, storedBytes } = batch.payload;
  return {
    status: batch.status,
    startedAt: batch.startedAt,
    completedAt: batch.completedAt,
    workflowId: batch.workflowId,
    webhook: { ...batch.webhook },
    error: batch.error,
    ...(batch.upload ? { upload: { ...batch.upload, segments, rawBytes, storedBytes } } : {}),
    ...(batch.redrives ? { redrives: batch.redrives } : {}),
  };
}

function iso(value: unknown): string | null {
  return value instanceof Date ? value.toISOString() : null;
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function number(value: unknown): number {
  return typeof value === 'number' ? value : Number(value ?? 0) || 0;
}

function stateOfRow(row: ParseObject): MutableState {
  return {
    status: row.get('status') as BatchStatus,
    startedAt: iso(row.get('startedAt')),
    completedAt: iso(row.get('completedAt')),
    workflowId: text(row.get('workflowId')),
    webhook: {
      url: text(row.get('webhookUrl')),
      secret: text(row.get('webhookSecret')),
      delivered: row.get('webhookSent') === true,
      attempts: number(row.get('webhookAttempts')),
      lastError: text(row.get('webhookLastError')),
      // Absent on rows written before the field existed (and on those that never set it): read back as absent.
      ...(typeof row.get('webhookGaveUp') === 'boolean' ? { gaveUp: row.get('webhookGaveUp') as boolean } : {}),
    },
    error: text(row.get('failureReason')),
    ...uploadOfRow(row),
    ...(number(row.get('redrives')) > 0 ? { redrives: number(row.get('redrives')) } : {}),
  };
}

/** The upload state a batch shows, without the payload growth kept beside it. */
function uploadState(upload: UploadState): UploadState {
  return {
    complete: upload.complete,
    received: upload.received,
    ...(upload.storedAt ? { storedAt: upload.storedAt } : {}),
    ...(upload.bodySha256 ? { bodySha256: upload.bodySha256 } : {}),
  };
}

function uploadOfRow(row: ParseObject): Pick<MutableState, 'upload'> {
  const upload = row.get('upload') as UploadState | undefined;
  if (!upload || typeof upload !== 'object') return {};
  const growth = { segments: number(row.get('segmentCount')), rawBytes: number(row.get('rawBytes')), storedBytes: number(row.get('storedBytes')) };
  const storedAt = typeof upload.storedAt === 'string' ? { storedAt: upload.storedAt } : {};
  const bodySha256 = typeof upload.bodySha256 === 'string' ? { bodySha256: upload.bodySha256 } : {};
  return { upload: { complete: upload.complete === true, received: number(upload.received), ...storedAt, ...bodySha256, ...growth } };
}

function countsOfRow(row: ParseObject): Counts {
  return {
    total: number(row.get('totalMemories')),
    processed: number(row.get('processedCount')),
    succeeded: number(row.get('successCount')),
    failed: number(row.get('failCount')),
  };
}

/** The projected write outcomes, or null on a batch row stored before the ledger kept them. */
function writtenOfRow(row: ParseObject): WriteCounts | null {
  if (row.get('createdCount') === undefined) return null;
  return { created: number(row.get('createdCount')), updated: number(row.get('updatedCount')), unchanged: number(row.get('unchangedCount')) };
}

function sameCounts(a: Counts, b: Counts): boolean {
  return a.processed === b.processed && a.succeeded === b.succeeded && a.failed === b.failed;
}

/** The ledger's sums: the counters but `total`, and the write outcomes. */
interface LedgerSums extends Omit<Counts, 'total'> {
  written: WriteCounts;
}

function tenantOfRow(row: ParseObject): Tenant {
  return {
    organization: row.get('organization'),
    namespace: row.get('namespace'),
    user: row.get('user'),
    workspace: row.get('workspace'),
  };
}

function toBatch(row: ParseObject, version: number, state: MutableState, storedCounts: Counts, written: WriteCounts | null): Batch {
  const upload = state.upload;
  const counts = upload ? { ...storedCounts, total: upload.received } : storedCounts;
  return {
    key: row.get('batchId'),
    id: row.get('clientBatchId'),
    requestId: row.get('requestId'),
    tenant: tenantOfRow(row),
    status: state.status,
    version,
    createdAt: iso(row.get('submittedAt'))!,
    startedAt: state.startedAt,
    completedAt: state.completedAt,
    counts,
    written,
    payload: {
      codec: row.get('payloadCodec') as Codec,
      prefix: row.get('payloadPrefix'),
      segments: upload ? upload.segments : number(row.get('segmentCount')),
      rawBytes: upload ? upload.rawBytes : number(row.get('rawBytes')),
      storedBytes: upload ? upload.storedBytes : number(row.get('storedBytes')),
    },
    ...(upload ? { upload: uploadState(upload) } : {}),
    ...(text(row.get('invalidItems')) ? { invalidItems: text(row.get('invalidItems')) as Batch['invalidItems'] } : {}),
    workflowId: state.workflowId,
    webhook: state.webhook,
    error: state.error,
    ...(state.redrives ? { redrives: state.redrives } : {}),
    // Absent on batches stored before these fields existed (and when unset): left out, not null.
    ...(row.get('memoryDefaults') ? { memoryDefaults: row.get('memoryDefaults') as Batch['memoryDefaults'] } : {}),
    ...(text(row.get('bodySha256')) ? { fingerprint: text(row.get('bodySha256')) } : {}),
    ...(text(row.get('onExisting')) ? { onExisting: text(row.get('onExisting')) as Batch['onExisting'] } : {}),
    ...(row.get('failureLimits') ? { failureLimits: { ...(row.get('failureLimits') as NonNullable<Batch['failureLimits']>) } } : {}),
    completionWindow: text(row.get('completionWindow')),
    expiresAt: iso(row.get('expiresAt')),
    metadata: { ...((row.get('batchMetadata') as Record<string, string> | undefined) ?? {}) },
  };
}

function countsOfSums(total: number, sums: LedgerSums): Counts {
  return { total, processed: sums.processed, succeeded: sums.succeeded, failed: sums.failed };
}

/** Sets a field, or removes it for null, so that an absent value reads back as null. */
function put(row: ParseObject, field: string, value: unknown): void {
  if (value === null || value === undefined) row.unset(field);
  else row.set(field, value);
}

function writeState(row: ParseObject, version: number, state: MutableState): void {
  row.set('status', state.status);
  row.set('version', version);
  put(row, 'startedAt', state.startedAt ? new Date(state.startedAt) : null);
  put(row, 'completedAt', state.completedAt ? new Date(state.completedAt) : null);
  put(row, 'workflowId', state.workflowId);
  put(row, 'webhookUrl', state.webhook.url);
  put(row, 'webhookSecret', state.webhook.secret);
  row.set('webhookSent', state.webhook.delivered);
  row.set('webhookAttempts', state.webhook.attempts);
  put(row, 'webhookLastError', state.webhook.lastError);
  put(row, 'webhookGaveUp', state.webhook.gaveUp);
  put(row, 'failureReason', state.error);
  if (state.upload) {
    // The projection of an open upload's growth, for list pages and Parse Dashboard; `get` reads the version row.
    row.set('upload', uploadState(state.upload));
    row.set('segmentCount', state.upload.segments);
    row.set('rawBytes', state.upload.rawBytes);
    row.set('storedBytes', state.upload.storedBytes);
    row.set('totalMemories', state.upload.received);
  }
  put(row, 'redrives', state.redrives ?? null);
}

function encodeCursor(createdAt: string, key: string): string {
  return Buffer.from(JSON.stringify([createdAt, key])).toString('base64url');
}

function decodeCursor(cursor: string): [string, string] | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(value) || value.length !== 2 || !value.every((v) => typeof v === 'string')) return undefined;
    const [createdAt, key] = value as [string, string];
    return Number.isNaN(Date.parse(createdAt)) ? undefined : [createdAt, key];
  } catch {
    return undefined;
  }
}

interface VersionRow {
  version: number;
  state: MutableState;
}

export class ParseBatchRepository implements BatchRepository {
  readonly #connection: ParseConnection;
  readonly #Parse: ParseConnection['Parse'];
  readonly #roles: OrganizationRoles;

  readonly #schema: ParseSchemaSetup;

  /** `schema`: the preparation shared with the other Parse adapters of this process (default: its own). */
  constructor(connection: ParseConnection, schema = new ParseSchemaSetup(connection)) {
    this.#schema = schema;
    this.#connection = connection;
    this.#Parse = connection.Parse;
    this.#roles = new OrganizationRoles(connection);
  }

  async create(batch: Batch): Promise<{ created: boolean; batch: Batch }> {
    await this.#roles.ensure(batch.tenant.organization);
    const row = new this.#Parse.Object(parseClasses.batch);
    row.set({
      batchId: batch.key,
      clientBatchId: batch.id,
      requestId: batch.requestId,
      ...batch.tenant,
      submittedAt: new Date(batch.createdAt),
      totalMemories: batch.counts.total,
      processedCount: 0,
      successCount: 0,
      failCount: 0,
      // Zero, not absent, for a batch whose ledger keeps write outcomes (see `writtenOfRow`); the counts are the
      // ledger's sums, so a new batch starts at zero whatever it was given.
      ...(batch.written ? { createdCount: 0, updatedCount: 0, unchangedCount: 0 } : {}),
      payloadCodec: batch.payload.codec,
      payloadPrefix: batch.payload.prefix,
      segmentCount: batch.payload.segments,
      rawBytes: batch.payload.rawBytes,
      storedBytes: batch.payload.storedBytes,
      errors: [],
      batchMetadata: batch.metadata ?? {},
    });
    put(row, 'memoryDefaults', batch.memoryDefaults);
    put(row, 'bodySha256', batch.fingerprint);
    put(row, 'onExisting', batch.onExisting);
    put(row, 'failureLimits', batch.failureLimits);
    put(row, 'invalidItems', batch.invalidItems);
    put(row, 'completionWindow', batch.completionWindow);
    put(row, 'expiresAt', batch.expiresAt ? new Date(batch.expiresAt) : null);
    writeState(row, batch.version, mutableState(batch));
    row.setACL(new this.#Parse.ACL(tenantAcl(batch.tenant)));
    let created = true;
    try {
      await row.save(null, useMasterKey);
    } catch (error) {
      if (!isParseError(error, ParseErrorCode.duplicateValue)) throw error;
      created = false;
    }
    const stored = await this.get(batch.key);
    if (!stored) throw new Error(`batch ${batch.key} is missing right after it was stored`);
    return { created, batch: stored };
  }

  async get(key: string): Promise<Batch | undefined> {
    const [row, latest, sums] = await Promise.all([this.#row(key), this.#latestVersion(key), this.#sums(key)]);
    if (!row) return undefined;
    const rowVersion = number(row.get('version'));
    const { written, ...sumCounts } = sums;
    const counts: Counts = { total: number(row.get('totalMemories')), ...sumCounts };
    const current = latest && latest.version > rowVersion ? latest : { version: rowVersion, state: stateOfRow(row) };
    // Repair what a crash or a lost connection left behind; the answer stands either way.
    if (current.version > rowVersion) await this.#project(row, current).catch(() => undefined);
    if (isFinal(current.state.status) && !sameCounts(countsOfRow(row), counts)) {
      await this.#projectCounts(row, key, sums, []).catch(() => undefined);
    }
    return toBatch(row, current.version, current.state, counts, writtenOfRow(row) === null ? null : written);
  }

  async update(key: string, expectedVersion: number, patch: BatchPatch): Promise<Batch | 'conflict' | IllegalTransition> {
    const current = await this.get(key);
    if (!current || current.version !== expectedVersion) return 'conflict';
    const applied = applyPatch(current, patch);
    if (!applied.ok) return applied.error;
    const next = applied.value;
    const commit = new this.#Parse.Object(parseClasses.version);
    commit.set({ batchId: key, version: next.version, state: mutableState(next) });
    commit.setACL(new this.#Parse.ACL(tenantAcl(current.tenant)));
    try {
      await commit.save(null, useMasterKey);
    } catch (error) {
      if (isParseError(error, ParseErrorCode.duplicateValue)) return 'conflict';
      throw error;
    }
    // The commit stands from here on; a projection that fails now is repaired by the next `get`.
    const row = await this.#row(key).catch(() => undefined);
    if (row) await this.#project(row, { version: next.version, state: mutableState(next) }).catch(() => undefined);
    return next;
  }

  async recordSegment(
    key: string,
    outcome: SegmentOutcome,
    itemErrors: ItemError[],
    workerId: string,
  ): Promise<{ applied: boolean; counts: Counts }> {
    checkSegmentOutcome(outcome);
    const row = await this.#row(key);
    if (!row) throw new Error(`batch ${key} does not exist`);
    const current = await this.get(key);
    // Too late: the batch ended (it expired) while this segment ran; a final batch's counts stay as they ended.
    // Parse has no transaction to make this check and the insert one step: a segment finishing in the same instant
    // as the expiry may still count (the counts then move from expired to its outcome; the sum stays the total).
    if (current && isFinal(current.status)) return { applied: false, counts: current.counts };
    const acl = tenantAcl(tenantOfRow(row));
    await this.#storeItemErrors(key, outcome.segment, itemErrors, acl);

    const entry = new this.#Parse.Object(parseClasses.segment);
    entry.set({
      batchId: key,
      segment: outcome.segment,
      succeeded: outcome.succeeded,
      failed: outcome.failed,
      ...outcome.written,
      workerId,
      recordedAt: new Date(),
    });
    entry.setACL(new this.#Parse.ACL(acl));
    let applied = true;
    try {
      await entry.save(null, useMasterKey);
    } catch (error) {
      if (!isParseError(error, ParseErrorCode.duplicateValue)) throw error;
      applied = false;
    }
    const sums = await this.#sums(key);
    if (applied) {
      const sampleRoom = errorSampleSize - ((row.get('errors') as unknown[] | undefined)?.length ?? 0);
      const sample = itemErrors.slice(0, Math.max(0, sampleRoom));
      // The ledger row is the record; the counters on the batch row only mirror it, and the next segment refreshes them.
      await this.#projectCounts(row, key, sums, sample).catch(() => undefined);
    }
    return { applied, counts: countsOfSums(number(row.get('totalMemories')), sums) };
  }

  async recordRedrive(key: string, outcome: RedriveOutcome, workerId: string): Promise<{ applied: boolean; counts: Counts }> {
    const row = await this.#row(key);
    if (!row) throw new Error(`batch ${key} does not exist`);
    const current = await this.get(key);
    if (current && isFinal(current.status)) return { applied: false, counts: current.counts };
    const total = number(row.get('totalMemories'));
    // The recovered items are those that still have an item error; the ledger row (unique per redrive and segment)
    // is the record and carries their indexes, then their errors go. A crash between the two is repaired by the
    // repeat, which finds the row and removes the errors it names (counts come from the rows, so they are exact).
    const errorRows = outcome.recovered.length === 0
      ? []
      : await new this.#Parse.Query(parseClasses.itemError)
        .equalTo('batchId', key)
        .containedIn('index', outcome.recovered.map((item) => item.index))
        .limit(outcome.recovered.length)
        .find(useMasterKey);
    const recoveredIndexes = errorRows.map((r) => number(r.get('index'))).sort((a, b) => a - b);
    const outcomeOf = new Map(outcome.recovered.map((item) => [item.index, item.outcome]));
    const written = writeCountsOfOutcomes(recoveredIndexes.map((index) => outcomeOf.get(index)!));
    const entry = new this.#Parse.Object(parseClasses.redrive);
    entry.set({
      batchId: key,
      redrive: outcome.redrive,
      segment: outcome.segment,
      recovered: recoveredIndexes.length,
      recoveredIndexes,
      // The recovered items' write outcomes, summed with the segments' (see `#sums`).
      ...written,
      failedAgain: outcome.failedAgain.length,
      workerId,
      recordedAt: new Date(),
    });
    entry.setACL(new this.#Parse.ACL(tenantAcl(tenantOfRow(row))));
    let applied = true;
    try {
      await entry.save(null, useMasterKey);
    } catch (error) {
      if (!isParseError(error, ParseErrorCode.duplicateValue)) throw error;
      applied = false;
    }
    const recorded = applied
      ? entry
      : await new this.#Parse.Query(parseClasses.redrive)
        .equalTo('batchId', key).equalTo('redrive', outcome.redrive).equalTo('segment', outcome.segment)
        .first(useMasterKey);
    const gone = new Set((recorded?.get('recoveredIndexes') as number[] | undefined) ?? []);
    const stale = applied ? errorRows : errorRows.filter((r) => gone.has(number(r.get('index'))));
    // A concurrent repeat may have removed some already: "not found" is the state wanted.
    await Promise.all(stale.map((errorRow) => errorRow.destroy(useMasterKey).catch((error: unknown) => {
      if (!isParseError(error, ParseErrorCode.objectNotFound)) throw error;
    })));
    if (applied) {
      for (const item of outcome.failedAgain) {
        const again = await new this.#Parse.Query(parseClasses.itemError).equalTo('batchId', key).equalTo('index', item.index).first(useMasterKey);
        if (again) {
          again.set('message', item.error);
          await again.save(null, useMasterKey);
        }
      }
    }
    const sums = await this.#sums(key);
    if (applied) await this.#projectCounts(row, key, sums, []).catch(() => undefined);
    return { applied, counts: countsOfSums(total, sums) };
  }

  async listRedriveSegments(key: string, redrive: number): Promise<number[]> {
    const segments: number[] = [];
    let after = -1;
    for (;;) {
      const page = await new this.#Parse.Query(parseClasses.redrive)
        .equalTo('batchId', key).equalTo('redrive', redrive).greaterThan('segment', after)
        .ascending('segment').limit(pageSize).select('segment')
        .find(useMasterKey);
      segments.push(...page.map((r) => number(r.get('segment'))));
      if (page.length < pageSize) return segments;
      after = segments.at(-1)!;
    }
  }

  async listSegments(key: string): Promise<SegmentRecord[]> {
    const rows = await this.#findAll(parseClasses.segment, key, 'segment');
    return rows.map((row) => ({
      segment: number(row.get('segment')),
      succeeded: number(row.get('succeeded')),
      failed: number(row.get('failed')), // literal: a ledger column, not a batch status
      // A segment recorded before the ledger kept outcomes has none (0 each).
      written: { created: number(row.get('created')), updated: number(row.get('updated')), unchanged: number(row.get('unchanged')) },
      workerId: row.get('workerId'),
      recordedAt: iso(row.get('recordedAt'))!,
    }));
  }

  async listErrors(key: string, afterIndex: number, limit: number): Promise<ItemError[]> {
    const rows = await new this.#Parse.Query(parseClasses.itemError)
      .equalTo('batchId', key)
      .greaterThan('index', afterIndex)
      .ascending('index')
      .limit(limit)
      .find(useMasterKey);
    return rows.map((row) => ({
      index: number(row.get('index')),
      externalId: text(row.get('externalId')),
      error: row.get('message'),
    }));
  }

  async list(organization: string, query: BatchListQuery): Promise<Page<Batch>> {
    const Parse = this.#Parse;
    const base = () => {
      const q = new Parse.Query(parseClasses.batch).equalTo('organization', organization);
      if (query.status) q.equalTo('status', query.status);
      // Keys match [A-Za-z0-9_-] (checked at the edge), so each is a plain sub-field path.
      for (const [name, value] of Object.entries(query.metadata ?? {})) q.equalTo(`batchMetadata.${name}`, value);
      return q;
    };
    let q = base();
    if (query.cursor) {
      const after = decodeCursor(query.cursor);
      if (!after) throw new InvalidCursorError('cursor is not valid');
      const at = new Date(after[0]);
      q = Parse.Query.or(
        base().lessThan('submittedAt', at),
        base().equalTo('submittedAt', at).lessThan('batchId', after[1]),
      );
    }
    const rows = await q.descending('submittedAt').addDescending('batchId').limit(query.limit + 1).find(useMasterKey);
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return {
      items: page.map((row) => toBatch(row, number(row.get('version')), stateOfRow(row), countsOfRow(row), writtenOfRow(row))),
      nextCursor: rows.length > query.limit && last ? encodeCursor(iso(last.get('submittedAt'))!, last.get('batchId')) : null,
    };
  }

  async delete(key: string): Promise<boolean> {
    // The dependent rows first: a crash half-way leaves a batch that can be deleted again, never orphans without one.
    for (const className of [parseClasses.itemError, parseClasses.segment, parseClasses.redrive, parseClasses.version]) {
      for (;;) {
        const rows = await new this.#Parse.Query(className).equalTo('batchId', key).limit(pageSize).find(useMasterKey);
        if (rows.length === 0) break;
        await this.#Parse.Object.destroyAll(rows, useMasterKey);
      }
    }
    const row = await this.#row(key);
    if (!row) return false;
    await row.destroy(useMasterKey);
    return true;
  }

  async listNeedingWork(maxWebhookAttempts: number): Promise<string[]> {
    // The batch rows may lag the newest version by an update in flight; a lagging row shows an earlier state, which
    // needs at least as much work, so this list is never short. Callers read each batch before acting on it.
    const Parse = this.#Parse;
    const unfinished = new Parse.Query(parseClasses.batch).containedIn('status', [...unfinishedStatuses]);
    const owed = new Parse.Query(parseClasses.batch)
      .containedIn('status', [...finalStatuses])
      .exists('webhookUrl')
      .notEqualTo('webhookSent', true)
      .lessThan('webhookAttempts', maxWebhookAttempts)
      .notEqualTo('webhookGaveUp', true);
    const keys: string[] = [];
    let skip = 0;
    for (;;) {
      const rows = await Parse.Query.or(unfinished, owed)
        .ascending('submittedAt')
        .addAscending('batchId')
        .select('batchId')
        .skip(skip)
        .limit(pageSize)
        .find(useMasterKey);
      keys.push(...rows.map((row) => row.get('batchId') as string));
      if (rows.length < pageSize) return keys;
      skip += rows.length;
    }
  }

  async backlog(): Promise<Backlog> {
    const Parse = this.#Parse;
    const [counts, oldest] = await Promise.all([
      Promise.all(unfinishedStatuses.map((status) => new Parse.Query(parseClasses.batch).equalTo('status', status).count(useMasterKey))),
      new Parse.Query(parseClasses.batch)
        .containedIn('status', [...unfinishedStatuses])
        .ascending('submittedAt')
        .select('submittedAt')
        .first(useMasterKey),
    ]);
    return {
      byStatus: Object.fromEntries(unfinishedStatuses.map((status, i) => [status, counts[i]!])),
      oldestCreatedAt: oldest ? iso(oldest.get('submittedAt')) : null,
    };
  }

  async listExpiredPayloads(completedBefore: string, limit: number): Promise<ExpiredPayload[]> {
    // From the batch rows: a completion whose projection has not landed yet shows up after the next `get`.
    const rows = await new this.#Parse.Query(parseClasses.batch)
      .containedIn('status', [...finalStatuses])
      .lessThanOrEqualTo('completedAt', new Date(completedBefore))
      .doesNotExist('payloadExpiredAt')
      .ascending('completedAt')
      .addAscending('batchId')
      .select('batchId', 'payloadPrefix', 'completedAt')
      .limit(limit)
      .find(useMasterKey);
    return rows.map((row) => ({
      key: row.get('batchId') as string,
      prefix: row.get('payloadPrefix') as string,
      completedAt: iso(row.get('completedAt'))!,
    }));
  }

  async referencedPrefixes(prefixes: string[]): Promise<Set<string>> {
    if (prefixes.length === 0) return new Set();
    const rows = await new this.#Parse.Query(parseClasses.batch)
      .containedIn('payloadPrefix', prefixes)
      .select('payloadPrefix')
      .limit(prefixes.length * 2)
      .find(useMasterKey);
    return new Set(rows.map((row) => row.get('payloadPrefix') as string));
  }

  async markPayloadExpired(key: string, expiredAt: string): Promise<void> {
    const row = await this.#row(key);
    if (!row || row.get('payloadExpiredAt')) return;
    // A fresh object writes this one field only, never a stale copy of the others.
    const mark = new this.#Parse.Object(parseClasses.batch);
    mark.id = row.id;
    mark.set('payloadExpiredAt', new Date(expiredAt));
    await mark.save(null, useMasterKey);
  }

  /** Its classes and indexes are prepared with the other Parse classes (`migrateParse`), once. */
  prepare(): Promise<undefined> {
    return this.#schema.prepare();
  }

  async check(): Promise<void> {
    await new this.#Parse.Query(parseClasses.batch).select('batchId').first(useMasterKey);
  }

  async close(): Promise<void> {}

  async #row(key: string): Promise<ParseObject | undefined> {
    return new this.#Parse.Query(parseClasses.batch).equalTo('batchId', key).first(useMasterKey);
  }

  async #latestVersion(key: string): Promise<VersionRow | undefined> {
    const row = await new this.#Parse.Query(parseClasses.version)
      .equalTo('batchId', key)
      .descending('version')
      .first(useMasterKey);
    return row ? { version: number(row.get('version')), state: row.get('state') as MutableState } : undefined;
  }

  async #sums(key: string): Promise<LedgerSums> {
    // Each query sums one class's rows in one statement: a row's outcomes are counted exactly when its `succeeded`
    // (or `recovered`) is. Fields absent on rows of an earlier version sum as 0.
    const outcomeSums = Object.fromEntries(writeOutcomes.map((name) => [name, { $sum: `$${name}` }]));
    type Sum = number | string | null | undefined;
    const [result] = (await new this.#Parse.Query(parseClasses.segment).aggregate(
      [
        { $match: { batchId: key } },
        { $group: { _id: '$batchId', succeeded: { $sum: '$succeeded' }, failed: { $sum: '$failed' }, ...outcomeSums } },
      ],
      useMasterKey,
    )) as ({ succeeded?: Sum; failed?: Sum } & Partial<Record<keyof WriteCounts, Sum>>)[];
    const [redriven] = (await new this.#Parse.Query(parseClasses.redrive).aggregate(
      [
        { $match: { batchId: key } },
        { $group: { _id: '$batchId', recovered: { $sum: '$recovered' }, ...outcomeSums } },
      ],
      useMasterKey,
    )) as ({ recovered?: Sum } & Partial<Record<keyof WriteCounts, Sum>>)[];
    // Redriven items moved from failed to succeeded; `processed` is what the first runs recorded.
    const recovered = number(redriven?.recovered);
    const succeeded = number(result?.succeeded) + recovered;
    const failed = number(result?.failed) - recovered;
    const written = Object.fromEntries(writeOutcomes.map((name) => [name, number(result?.[name]) + number(redriven?.[name])])) as WriteCounts;
    return { processed: succeeded + failed, succeeded, failed, written };
  }

  /** Writes `target` into the batch row, then again with any newer version, until the newest is written. */
  async #project(row: ParseObject, target: VersionRow): Promise<void> {
    const key = row.get('batchId') as string;
    for (let round = 0; round < projectionRounds; round += 1) {
      writeState(row, target.version, target.state);
      await row.save(null, useMasterKey);
      const latest = await this.#latestVersion(key);
      if (!latest || latest.version <= target.version) return;
      target = latest;
    }
  }

  /** Writes the ledger sums into the batch row's counters, again while they change under concurrent segments. */
  async #projectCounts(row: ParseObject, key: string, sums: LedgerSums, sample: ItemError[]): Promise<void> {
    let first = true;
    for (let round = 0; round < projectionRounds; round += 1) {
      // A fresh object writes only these fields, never a stale copy of the state fields.
      const counters = new this.#Parse.Object(parseClasses.batch);
      counters.id = row.id;
      counters.set({ processedCount: sums.processed, successCount: sums.succeeded, failCount: sums.failed });
      // Outcomes only on a batch whose ledger keeps them: an earlier version's batch stays without (`writtenOfRow`).
      if (writtenOfRow(row) !== null) {
        counters.set({ createdCount: sums.written.created, updatedCount: sums.written.updated, unchangedCount: sums.written.unchanged });
      }
      if (first && sample.length > 0) {
        counters.addAllUnique(
          'errors',
          sample.map((e) => ({ index: e.index, externalId: e.externalId, error: e.error })),
        );
      }
      first = false;
      await counters.save(null, useMasterKey);
      const again = await this.#sums(key);
      if (again.processed === sums.processed && again.succeeded === sums.succeeded) return;
      sums = again;
    }
  }

  async #storeItemErrors(key: string, segment: number, itemErrors: ItemError[], acl: Record<string, unknown>): Promise<void> {
    for (let start = 0; start < itemErrors.length; start += maxBatchOperations) {
      const operations: BatchOperation[] = itemErrors.slice(start, start + maxBatchOperations).map((item) => ({
        method: 'POST',
        path: `/classes/${parseClasses.itemError}`,
        body: {
          batchId: key,
          index: item.index,
          segment,
          ...(item.externalId === null ? {} : { externalId: item.externalId }),
          message: item.error,
          ACL: acl,
        },
      }));
      const results = await this.#connection.batch(operations);
      for (const result of results) {
        if (result.error && result.error.code !== ParseErrorCode.duplicateValue) {
          throw new this.#Parse.Error(result.error.code, `storing an item error failed: ${result.error.error}`);
        }
      }
    }
  }

  async #findAll(className: string, key: string, orderField: string): Promise<ParseObject[]> {
    const rows: ParseObject[] = [];
    let after = -Infinity;
    for (;;) {
      const q = new this.#Parse.Query(className).equalTo('batchId', key).ascending(orderField).limit(pageSize);
      if (after > -Infinity) q.greaterThan(orderField, after);
      const page = await q.find(useMasterKey);
      rows.push(...page);
      if (page.length < pageSize) return rows;
      after = number(page.at(-1)!.get(orderField));
    }
  }
}
