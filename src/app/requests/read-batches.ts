// Queries a tenant may make: one batch, its list, its per-item results and errors. Another tenant's batch is "not found".
import type { Batch, Tenant } from '../../domain/batch.ts';
import { tenantBatchKey } from './batch-key.ts';
import { itemOutcome, type WriteOutcomeName } from '../../domain/progress.ts';
import type { MemoryAttributes } from '../../domain/memory.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type BatchListQuery, InvalidCursorError, type Page } from '../../ports/batch-repository.ts';
import type { Services } from '../services.ts';
import { type ErrorOf, notFound, validation } from '../errors.ts';

export async function getBatch(services: Services, tenant: Tenant, id: string): Promise<Result<Batch, ErrorOf<'not_found'>>> {
  const ref = tenantBatchKey(tenant, id);
  if (!ref.ok) return err(ref.error);
  const batch = await services.batches.get(ref.value);
  // The key is derived from the organization, so another tenant's id can never resolve; the check is belt and braces.
  if (!batch || batch.tenant.organization !== tenant.organization) return err(notFound(`batch ${id}`));
  return ok(batch);
}

export async function listBatches(services: Services, tenant: Tenant, query: BatchListQuery): Promise<Result<Page<Batch>, ErrorOf<'validation'>>> {
  try {
    return ok(await services.batches.list(tenant.organization, query));
  } catch (error) {
    if (error instanceof InvalidCursorError) return err(validation('cursor is not valid', [{ path: 'cursor', message: 'must come from next_cursor' }]));
    throw error;
  }
}

export type ItemResult =
  | ({ index: number; external_id: string | null; status: typeof itemOutcome.succeeded; outcome: WriteOutcomeName; memory_id: string; version: number; sink_id?: string } & MemoryAttributes)
  | { index: number; external_id: string | null; status: typeof itemOutcome.failed; error: string };

function parseIndexCursor(cursor: string | undefined): Result<number, ErrorOf<'validation'>> {
  if (cursor === undefined) return ok(-1);
  const value = Number(cursor);
  return Number.isSafeInteger(value) && value >= -1
    ? ok(value)
    : err(validation('cursor is not valid', [{ path: 'cursor', message: 'must come from next_cursor' }]));
}

/** Results merge stored memories and recorded item errors, both ordered by index; the cursor is the last index. */
export async function listResults(
  services: Services,
  tenant: Tenant,
  id: string,
  query: { limit: number; cursor?: string | undefined },
): Promise<Result<Page<ItemResult>, ErrorOf<'not_found' | 'validation'>>> {
  const batch = await getBatch(services, tenant, id);
  if (!batch.ok) return batch;
  const after = parseIndexCursor(query.cursor);
  if (!after.ok) return after;
  const [stored, failed] = await Promise.all([
    services.sink.listByBatch(batch.value.key, after.value, query.limit),
    services.batches.listErrors(batch.value.key, after.value, query.limit),
  ]);
  const all: ItemResult[] = [
    // The Papr fields a memory was stored with come back beside batchmem's own, under their own names.
    ...stored.map((m) => ({
      index: m.index,
      external_id: m.externalId,
      status: itemOutcome.succeeded,
      outcome: m.outcome,
      memory_id: m.memoryId,
      version: m.version,
      ...m.attributes,
      // A forwarding sink also knows the target's id for the memory.
      ...(m.sinkId ? { sink_id: m.sinkId } : {}),
    })),
    ...failed.map((e) => ({ index: e.index, external_id: e.externalId, status: itemOutcome.failed, error: e.error })),
  ].sort((a, b) => a.index - b.index);
  const merged = all.slice(0, query.limit);
  // Either source returning a full page means more may follow.
  const more = all.length > query.limit || stored.length === query.limit || failed.length === query.limit;
  const last = merged.at(-1);
  return ok({ items: merged, nextCursor: more && last ? String(last.index) : null });
}

export async function listErrors(
  services: Services,
  tenant: Tenant,
  id: string,
  query: { limit: number; cursor?: string | undefined },
): Promise<Result<Page<{ index: number; external_id: string | null; error: string }>, ErrorOf<'not_found' | 'validation'>>> {
  const batch = await getBatch(services, tenant, id);
  if (!batch.ok) return batch;
  const after = parseIndexCursor(query.cursor);
  if (!after.ok) return after;
  const errors = await services.batches.listErrors(batch.value.key, after.value, query.limit);
  const last = errors.at(-1);
  return ok({
    items: errors.map((e) => ({ index: e.index, external_id: e.externalId, error: e.error })),
    nextCursor: errors.length === query.limit && last ? String(last.index) : null,
  });
}
