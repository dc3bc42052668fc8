// Bearer-key authentication. The key maps to a tenant; the key itself goes no further than this middleware.
import type { MiddlewareHandler } from 'hono';
import type { Tenant } from '../../domain/batch.ts';
import type { ApiKeyring } from '../api-keys.ts';
import { problemResponse } from './problem.ts';

export type AuthEnv = { Variables: { tenant: Tenant; requestId: string } };

export function requireApiKey(keys: ApiKeyring): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return problemResponse(c, 401, 'Unauthorized', 'send an API key as "Authorization: Bearer <key>"');
    const tenant = keys.tenantFor(match[1]!);
    if (!tenant) return problemResponse(c, 401, 'Unauthorized', 'the API key is not valid');
    c.set('tenant', tenant);
    await next();
  };
}
