// What every /v1 request is checked for before its route runs, so that nothing a client says is silently ignored:
// query parameters the route does not know (400, naming them) and a Content-Encoding the server cannot undo (415).
// A gzip or zstd body is replaced by its decoded stream, so every route reads, counts and limits decoded bytes.
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { validation } from '../errors.ts';
import type { AuthEnv } from './auth.ts';
import { decodedBody } from './body.ts';
import { appErrorResponse } from './problem.ts';

type Registry = OpenAPIHono<AuthEnv>['openAPIRegistry'];

interface KnownRoute {
  method: string;
  pattern: RegExp;
  /** Query parameter names; `name[key]` parameters are checked by `name`. */
  params: Set<string>;
  /** Whether the route reads a request body at all; one sent to a route that does not is refused, not ignored. */
  takesBody: boolean;
}

/** The query parameters each route declares in the OpenAPI document: the document and the check cannot disagree. */
function knownRoutes(registry: Registry): KnownRoute[] {
  const routes: KnownRoute[] = [];
  for (const definition of registry.definitions) {
    if (definition.type !== 'route') continue;
    const { method, path, request } = definition.route;
    const query = request?.query as { shape?: Record<string, unknown> } | undefined;
    const source = '^' + path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+') + '$';
    routes.push({ method: method.toUpperCase(), pattern: new RegExp(source), params: new Set(Object.keys(query?.shape ?? {})), takesBody: request?.body !== undefined });
  }
  return routes;
}

/**
 * Whether a request carries body bytes: by its Content-Length, or else by reading its stream until the first
 * non-empty chunk or the end (only on routes that take no body, so nothing reads it after this).
 */
async function sentBody(request: Request): Promise<boolean> {
  const length = request.headers.get('content-length');
  if (length !== null) return Number(length) > 0;
  if (!request.body) return false;
  const reader = request.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      if (value.byteLength > 0) return true;
    }
  } catch {
    return false;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

export function checkRequest(registry: Registry): MiddlewareHandler<AuthEnv> {
  let routes: KnownRoute[] | undefined;
  return async (c, next) => {
    routes ??= knownRoutes(registry);
    const route = routes.find((r) => r.method === c.req.method && r.pattern.test(c.req.path));
    if (route) {
      const unknown = new Set<string>();
      for (const name of new URL(c.req.url).searchParams.keys()) {
        const base = /^([^[\]]+)\[[^\]]*\]$/.exec(name)?.[1] ?? name;
        if (!route.params.has(base)) unknown.add(name.slice(0, 64));
      }
      // A parameter given twice has no single meaning (a framework would silently keep one): none is repeatable.
      const seen = new Set<string>();
      const repeated = new Set<string>();
      for (const name of new URL(c.req.url).searchParams.keys()) {
        if (seen.has(name)) repeated.add(name.slice(0, 64));
        seen.add(name);
      }
      if (unknown.size === 0 && repeated.size > 0) {
        const names = [...repeated].slice(0, 10);
        const errors = names.map((name) => ({ path: name, message: 'is given more than once' }));
        return appErrorResponse(c, validation(`query parameter${names.length > 1 ? 's' : ''} ${names.map((n) => JSON.stringify(n)).join(', ')} given more than once; give each once`, errors));
      }
      if (unknown.size === 0 && !route.takesBody && c.req.method === 'POST' && (await sentBody(c.req.raw))) {
        return appErrorResponse(c, validation(`${c.req.method} ${c.req.path} takes no body; send the request without one`, [{ path: '', message: 'a body is not accepted here' }]));
      }
      if (unknown.size > 0) {
        const names = [...unknown].slice(0, 10);
        const hint = unknown.has('webhook_secret') ? ' (send a webhook secret in the Webhook-Secret header or the JSON body, never in the URL)' : '';
        const errors = names.map((name) => ({ path: name, message: 'is not a parameter of this route' }));
        // A dry run reports, as for any other invalid request, what the real submit would refuse.
        if (c.req.path === '/v1/memory/batch' && c.req.query('validate_only') === 'true') return c.json({ valid: false, total: 0, errors }, 200);
        return appErrorResponse(c, validation(`unknown query parameter${names.length > 1 ? 's' : ''} ${names.map((n) => JSON.stringify(n)).join(', ')}${hint}`, errors));
      }
    }
    const encoding = c.req.header('content-encoding');
    if (encoding !== undefined && c.req.raw.body) {
      const decoded = decodedBody(c.req.raw.body, encoding);
      if ('unsupported' in decoded) return appErrorResponse(c, { kind: 'unsupported_format', detail: decoded.unsupported });
      if (decoded !== c.req.raw.body) {
        const headers = new Headers(c.req.raw.headers);
        headers.delete('content-encoding');
        // The declared length is of the encoded bytes; limits apply to the decoded ones as they are read.
        headers.delete('content-length');
        c.req.raw = new Request(c.req.raw.url, { method: c.req.raw.method, headers, body: decoded, duplex: 'half' } as RequestInit);
      }
    }
    await next();
  };
}
