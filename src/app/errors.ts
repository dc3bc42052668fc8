// The failures a use case reports to its caller. The HTTP edge maps each kind to a problem+json status.
import type { FieldIssue } from '../domain/errors.ts';

export type AppError =
  | { kind: 'validation'; detail: string; errors: FieldIssue[] }
  | { kind: 'unauthorized'; detail: string }
  | { kind: 'forbidden'; detail: string }
  | { kind: 'not_found'; detail: string }
  | { kind: 'conflict'; detail: string }
  | { kind: 'payload_too_large'; detail: string }
  | { kind: 'unsupported_media_type'; detail: string }
  | { kind: 'unprocessable'; detail: string }
  | { kind: 'unavailable'; detail: string };

/** Thrown where a value cannot be returned (inside a body stream); caught at the use case or the edge. */
export class AppFailure extends Error {
  readonly error: AppError;
  constructor(error: AppError, cause?: unknown) {
    super(error.detail, cause === undefined ? undefined : { cause });
    this.error = error;
  }
}

/** The error of one kind, for use cases that name exactly what they may answer. */
export type ErrorOf<K extends AppError['kind']> = Extract<AppError, { kind: K }>;

export function validation(detail: string, errors: FieldIssue[] = []): ErrorOf<'validation'> {
  return { kind: 'validation', detail, errors };
}

export function notFound(what: string): ErrorOf<'not_found'> {
  return { kind: 'not_found', detail: `${what} was not found` };
}

/** The request names a tenant other than the API key's. */
export function forbidden(detail: string): AppError {
  return { kind: 'forbidden', detail };
}
