// What every resource's routes share: an OpenAPI router whose request validation answers problem+json, and the
// problems every /v1 route may answer besides its own (a bad request, a missing or unknown key).
import { OpenAPIHono } from '@hono/zod-openapi';
import { validation } from '../errors.ts';
import type { AuthEnv } from './auth.ts';
import { appErrorResponse, problemDocs } from './problem.ts';

export function router() {
  return new OpenAPIHono<AuthEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const errors = result.error.issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));
      return appErrorResponse(c, validation(errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors));
    },
  });
}

/** Either header carries the key: `Authorization: Bearer` or Papr's `X-API-Key`. */
export const security: Record<string, string[]>[] = [{ bearer: [] }, { apiKey: [] }];

/** Declared on every /v1 route: request validation (400) and the API key check (401). */
export const guarded = problemDocs('validation', 'unauthenticated');

/**
 * `name[key]=value` query parameters as an object (`metadata[source]=crm` -> {source: "crm"}), or undefined when
 * there are none. A repeated key keeps its last value; keys are checked by the caller.
 */
export function bracketParams(params: URLSearchParams, name: string): Record<string, string> | undefined {
  const prefix = `${name}[`;
  let found: Record<string, string> | undefined;
  for (const [param, value] of params) {
    if (!param.startsWith(prefix) || !param.endsWith(']')) continue;
    found ??= {};
    Object.defineProperty(found, param.slice(prefix.length, -1), { value, enumerable: true, configurable: true, writable: true });
  }
  return found;
}
