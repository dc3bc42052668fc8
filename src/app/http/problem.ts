// RFC 9457 problem details: every error the API answers has this shape and media type.
import type { Context } from 'hono';
import type { FieldIssue } from '../../domain/errors.ts';
import type { AppError } from '../errors.ts';

export const problemMediaType = 'application/problem+json';

const statusOf: Record<AppError['kind'], { status: number; title: string }> = {
  validation: { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not found' },
  conflict: { status: 409, title: 'Conflict' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  unprocessable: { status: 422, title: 'Unprocessable content' },
  unavailable: { status: 503, title: 'Service unavailable' },
};

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

export function appErrorResponse(c: Context, error: AppError): Response {
  const { status, title } = statusOf[error.kind];
  return problemResponse(c, status, title, error.detail, error.kind === 'validation' ? error.errors : undefined);
}
