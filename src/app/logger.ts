// The process logger (pino, JSON lines). Secrets are redacted by path as a second line of defence:
// the code never logs a request's headers or body in the first place.
import { pino, type Logger } from 'pino';
import { traceFields } from './tracing.ts';

export const redactedPaths = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'webhook_secret',
  'webhookSecret',
  'secret',
  'webhook.secret',
  'apiKey',
  'key',
  '*.secret',
  '*.webhookSecret',
  '*.webhook_secret',
  'PARSE_MASTER_KEY',
  'masterKey',
];

/** With `traceIds` (tracing on), each line written inside a span carries its `trace_id` and `span_id`. */
export function createLogger(level: string, destination?: NodeJS.WritableStream, options: { traceIds?: boolean } = {}): Logger {
  return pino(
    {
      level,
      redact: { paths: redactedPaths, censor: '[redacted]' },
      base: { service: 'batchmem' },
      ...(options.traceIds ? { mixin: traceFields } : {}),
    },
    destination ?? process.stdout,
  );
}

export type { Logger };
