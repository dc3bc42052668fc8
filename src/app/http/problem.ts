// RFC 9457 problem details: every error the API answers has this shape and media type.
import type { Context, TypedResponse } from 'hono';
import type { FieldIssue } from '../../domain/errors.ts';
import type { AppError } from '../errors.ts';
import { ProblemDoc } from './schemas.ts';

export const problemMediaType = 'application/problem+json';

type Kind = AppError['kind'];

/** The one mapping from a use case's error kind to its HTTP status and problem title. */
const statusOf = {
  validation: { status: 400, title: 'Invalid request' },
  unauthenticated: { status: 401, title: 'Unauthorized' },
  other_tenant: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not found' },
  wrong_state: { status: 409, title: 'Conflict' },
  too_large: { status: 413, title: 'Payload too large' },
  unsupported_format: { status: 415, title: 'Unsupported media type' },
  idempotency_key_reused: { status: 422, title: 'Unprocessable content' },
  not_stored: { status: 422, title: 'Unprocessable content' },
  backend_unavailable: { status: 503, title: 'Service unavailable' },
} as const satisfies Record<Kind, { status: number; title: string }>;

export type ProblemStatus<K extends Kind> = (typeof statusOf)[K]['status'];

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: FieldIssue[];
}

export function problemBody(status: number, title: string, detail: string, errors?: FieldIssue[]): Problem {
  const type = `https://batchmem.dev/problems/${title.toLowerCase().replaceAll(' ', '-')}`;
  return errors && errors.length > 0 ? { type, title, status, detail, errors } : { type, title, status, detail };
}

export function problemResponse(c: Context, status: number, title: string, detail: string, errors?: FieldIssue[]): Response {
  const body = { ...problemBody(status, title, detail, errors), instance: c.req.path };
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      'content-type': problemMediaType,
      ...(status === 401 ? { 'www-authenticate': 'Bearer realm="batchmem"' } : {}),
      ...(status === 503 ? { 'retry-after': '5' } : {}),
    },
  });
}

/**
 * The problem+json answer to a use case's error, typed with the statuses its kinds map to, so that a route that
 * declares those problem responses (`problemDocs`) returns it as one of its own responses.
 */
export function appErrorResponse<E extends AppError>(c: Context, error: E): Response & TypedResponse<Problem, ProblemStatus<E['kind']>, 'json'> {
  const { status, title } = statusOf[error.kind as E['kind']];
  const response = problemResponse(c, status, title, error.detail, error.kind === 'validation' ? error.errors : undefined);
  // Built as a plain Response (no headers of the context), so its type is stated here, once.
  return response as unknown as Response & TypedResponse<Problem, ProblemStatus<E['kind']>, 'json'>;
}

type ProblemDocs<K extends Kind> = {
  [S in ProblemStatus<K>]: { description: string; content: { 'application/problem+json': { schema: typeof ProblemDoc } } };
};

/** The OpenAPI responses of the error kinds a route may answer, from the same mapping. */
export function problemDocs<K extends Kind>(...kinds: K[]): ProblemDocs<K> {
  return Object.fromEntries(
    kinds.map((kind) => [statusOf[kind].status, { description: statusOf[kind].title, content: { [problemMediaType]: { schema: ProblemDoc } } }]),
  ) as ProblemDocs<K>;
}
