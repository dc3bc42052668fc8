// The one way a request's batch id becomes a store key, shared by every use case that names a batch.
import { batchIdPattern, batchKey, type Tenant } from '../../domain/batch.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type ErrorOf, notFound } from '../errors.ts';

/**
 * The store key of `tenant`'s batch `id`. An id that breaks the batch-id rule can name no batch: `not_found`, whose
 * detail quotes at most 64 characters of it. The key is derived from the organization, so another tenant's id never
 * resolves to its batch.
 */
export function tenantBatchKey(tenant: Tenant, id: string): Result<string, ErrorOf<'not_found'>> {
  return batchIdPattern.test(id) ? ok(batchKey(tenant.organization, id)) : err(notFound(`batch ${id.slice(0, 64)}`));
}
