// API-key authentication. The key maps to a tenant; the key itself goes no further than this middleware.
// It comes as `Authorization: Bearer <key>` (batchmem's clients) or `X-API-Key: <key>` (Papr's SDKs).
import type { MiddlewareHandler } from 'hono';
import type { Tenant } from '../../domain/batch.ts';
import type { ApiKeyring } from '../api-keys.ts';
import { appErrorResponse } from './problem.ts';

const unauthorized = (detail: string) => ({ kind: 'unauthenticated' as const, detail });

export type AuthEnv = { Variables: { tenant: Tenant; requestId: string } };

export function requireApiKey(keys: ApiKeyring): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const authorization = c.req.header('authorization');
    const apiKeyHeader = c.req.header('x-api-key');
    const bearer = authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
    const apiKey = apiKeyHeader?.trim();
    if (authorization !== undefined && bearer === undefined) {
      return appErrorResponse(c, unauthorized('send an API key as "Authorization: Bearer <key>" or "X-API-Key: <key>"'));
    }
    // Two different keys in one request: which tenant is meant is ambiguous, so neither is used.
    if (bearer !== undefined && apiKey !== undefined && bearer !== apiKey) {
      return appErrorResponse(c, unauthorized('Authorization and X-API-Key name different keys; send one key'));
    }
    const key = bearer ?? apiKey;
    if (!key) return appErrorResponse(c, unauthorized('send an API key as "Authorization: Bearer <key>" or "X-API-Key: <key>"'));
    const tenant = keys.tenantFor(key);
    if (!tenant) return appErrorResponse(c, unauthorized('the API key is not valid'));
    c.set('tenant', tenant);
    await next();
  };
}
