// Builders of domain values for tests.
import { randomBytes } from 'node:crypto';
import { type Batch, batchKey, type Tenant } from '../../src/domain/batch.ts';

export const tenantA: Tenant = { organization: 'org-a', namespace: 'ns', user: 'user-a', workspace: 'ws' };
export const tenantB: Tenant = { organization: 'org-b', namespace: 'ns', user: 'user-b', workspace: 'ws' };

export function uniqueId(prefix = 'b'): string {
  return `${prefix}_${randomBytes(8).toString('hex')}`;
}

export function newBatch(overrides: Partial<Batch> = {}): Batch {
  const tenant = overrides.tenant ?? tenantA;
  const id = overrides.id ?? uniqueId();
  return {
    key: batchKey(tenant.organization, id),
    id,
    requestId: uniqueId('req'),
    tenant,
    status: 'pending',
    version: 1,
    createdAt: new Date().toISOString(),
    startedAt: null,
    completedAt: null,
    counts: { total: 100, processed: 0, succeeded: 0, failed: 0 },
    written: { created: 0, updated: 0, unchanged: 0 },
    payload: { codec: 'zstd', prefix: `${tenant.organization}/${id}`, segments: 4, rawBytes: 1000, storedBytes: 300 },
    workflowId: null,
    webhook: { url: null, secret: null, delivered: false, attempts: 0, lastError: null },
    error: null,
    completionWindow: null,
    expiresAt: null,
    metadata: {},
    ...overrides,
  };
}
