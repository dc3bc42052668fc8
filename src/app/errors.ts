// The failures a use case reports to its caller. The HTTP edge maps each kind to a problem+json status.
import type { FieldIssue } from '../domain/errors.ts';

/**
 * Each kind says what went wrong in the service's own terms; `http/problem.ts` is the one place that turns a kind
 * into a status and title.
 */
export type AppError =
  /** The request or an item in it breaks a rule; `errors` names each offending field. */
  | { kind: 'validation'; detail: string; errors: FieldIssue[] }
  /** No API key, or one that is not accepted. */
  | { kind: 'unauthenticated'; detail: string }
  /** The request names a tenant other than its API key's. */
  | { kind: 'other_tenant'; detail: string }
  /** No such batch (or route) for this tenant. */
  | { kind: 'not_found'; detail: string }
  /** The batch's status does not allow the action (cancel a final batch, delete an unfinished one). */
  | { kind: 'wrong_state'; detail: string }
  /** The body or the batch is over a configured limit. */
  | { kind: 'too_large'; detail: string }
  /** The body's media type, charset or content coding is not one the service reads. */
  | { kind: 'unsupported_format'; detail: string }
  /** The Idempotency-Key was already used for a different request body. */
  | { kind: 'idempotency_key_reused'; detail: string }
  /** A single added memory was processed and refused by the memory store. */
  | { kind: 'not_stored'; detail: string }
  /** A store or the orchestrator cannot be reached; nothing was kept, the caller may retry. */
  | { kind: 'backend_unavailable'; detail: string };

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
export function otherTenant(detail: string): AppError {
  return { kind: 'other_tenant', detail };
}
