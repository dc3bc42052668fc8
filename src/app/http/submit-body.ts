// How a submit body becomes items and options: the two formats (JSON with its envelope, NDJSON with its options in
// the query), read as a stream. Plain data in (`SubmitBodySpec`), so the same reading runs on the HTTP thread or on
// the upload thread (src/app/upload-thread.ts); nothing here imports the HTTP framework.
import { batchIdPattern, batchIdRule, type Tenant } from '../../domain/batch.ts';
import { type MemoryAttributes, type MemoryLimits, memoryAttributeNames, memoryAttributesSchema, withoutNulls } from '../../domain/memory.ts';
import type { InvalidItems } from '../../domain/invalid-items.ts';
import type { Result } from '../../domain/result.ts';
import { type AppError, AppFailure, validation } from '../errors.ts';
import {
  type BodyRead,
  checkedSegments,
  type DryRunReport,
  type ItemInput,
  type PreparedSegment,
  type SubmitOptions,
  validateBatch,
} from '../requests/submit-batch.ts';
import type { Settings } from '../services.ts';
import { jsonBatch, ndjsonItems } from './body.ts';

function fail(path: string, message: string): never {
  throw new AppFailure(validation(`${path} ${message}`, [{ path, message }]));
}

/**
 * Options of a JSON submit from its top-level fields. `null` is read as absent (Papr's clients send it for an unset
 * argument). `batch_size` is a concurrency hint of Papr's API: checked (an integer from 1 to 1000) and otherwise
 * unused, since segment concurrency is the server's setting. The Papr memory fields become defaults for every memory.
 */
export function envelopeOptions(raw: Record<string, unknown>, limits: MemoryLimits): SubmitOptions {
  const envelope = withoutNulls(raw);
  if (envelope.batch_id !== undefined && (typeof envelope.batch_id !== 'string' || !batchIdPattern.test(envelope.batch_id))) {
    fail('batch_id', batchIdRule);
  }
  for (const field of ['webhook_url', 'webhook_secret'] as const) {
    if (envelope[field] !== undefined && typeof envelope[field] !== 'string') fail(field, 'must be a string');
  }
  const batchSize = envelope.batch_size;
  if (batchSize !== undefined && (typeof batchSize !== 'number' || !Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 1000)) {
    fail('batch_size', 'must be an integer from 1 to 1000');
  }
  const defaults: Record<string, unknown> = {};
  for (const name of memoryAttributeNames) if (envelope[name] !== undefined) defaults[name] = envelope[name];
  const parsed = memoryAttributesSchema(limits).safeParse(defaults);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));
    throw new AppFailure(validation(issues.map((i) => `${i.path} ${i.message}`).join('; '), issues));
  }
  return {
    batchId: envelope.batch_id as string | undefined,
    webhookUrl: envelope.webhook_url as string | undefined,
    webhookSecret: envelope.webhook_secret as string | undefined,
    memoryDefaults: Object.keys(parsed.data).length > 0 ? (parsed.data as MemoryAttributes) : undefined,
    // Checked by the submit use case (batch metadata and deadline, see docs/api.md).
    completionWindow: envelope.completion_window,
    metadata: envelope.metadata,
    onExisting: envelope.on_existing,
    maxFailedItems: envelope.max_failed_items,
    maxFailedPercent: envelope.max_failed_percent,
    invalidItems: envelope.invalid_items,
  };
}

/**
 * The webhook secret of a request that may give it both in the `Webhook-Secret` header and elsewhere (`where`, e.g.
 * the JSON body): either one, or both when they are equal. Throws AppFailure (400 naming both) when they differ.
 */
export function webhookSecretOf(header: string | undefined, other: string | undefined, where: string): string | undefined {
  if (header !== undefined && other !== undefined && header !== other) {
    throw new AppFailure(
      validation(`the Webhook-Secret header and ${where} differ; give the secret once`, [
        { path: 'Webhook-Secret', message: `differs from ${where}` },
        { path: 'webhook_secret', message: 'differs from the Webhook-Secret header' },
      ]),
    );
  }
  return header ?? other;
}

/** Everything needed to read one submit body besides its bytes; structured-cloneable. */
export interface SubmitBodySpec {
  format: 'json' | 'ndjson';
  tenant: Tenant;
  /** Decoded bytes the body may have in all. */
  maxBytes: number;
  /** NDJSON: the bytes one line may have (`maxItemLineBytes`). */
  maxLineBytes: number;
  memoryLimits: MemoryLimits;
  /**
   * The options known before the body: NDJSON's, all of them (query and headers); a JSON body's request-level ones
   * (its Idempotency-Key), the rest coming from the body.
   */
  early: SubmitOptions;
  /** JSON: the Webhook-Secret header, which must agree with the body's `webhook_secret` when both are given. */
  headerSecret?: string | undefined;
}

/**
 * The items, options and item positions of a submit body as `checkedSegments` reads them. A JSON body's options are
 * known once it is read (they may follow the memories); reading them throws AppFailure for a malformed envelope.
 * An NDJSON body's items carry their line (`line 17`) for per-item failures.
 */
export function submitBodyInput(body: ReadableStream<Uint8Array>, spec: SubmitBodySpec): ItemInput {
  if (spec.format === 'json') {
    const parsed = jsonBatch(body, spec.maxBytes);
    return {
      tenant: spec.tenant,
      items: parsed.items,
      options: () => {
        const fromBody = envelopeOptions(parsed.envelope, spec.memoryLimits);
        return { ...spec.early, ...fromBody, webhookSecret: webhookSecretOf(spec.headerSecret, fromBody.webhookSecret, 'webhook_secret in the JSON body') };
      },
    };
  }
  const at = { line: 0 };
  return {
    tenant: spec.tenant,
    items: ndjsonItems(
      body,
      { maxBytes: spec.maxBytes, maxLineBytes: spec.maxLineBytes },
      { unreadable: spec.early.invalidItems === 'record' ? 'record' : 'refuse', position: at },
    ),
    options: () => spec.early,
    position: () => `line ${at.line}`,
  };
}

/**
 * Where submit bodies are read and checked: on the thread that serves HTTP (`inlineBodyReader`), or on the upload
 * thread (src/app/upload-thread.ts), so that the HTTP thread only moves bytes. Either gives the same segments,
 * answers and errors.
 */
export interface SubmitBodyReader {
  /** `checkedSegments` of the body; stopping early (`return()`) stops reading it and cancels it. */
  segments(body: ReadableStream<Uint8Array>, spec: SubmitBodySpec, mode: InvalidItems | undefined): AsyncGenerator<PreparedSegment, BodyRead, undefined>;
  /** `validateBatch` of the body (`?validate_only=true`). */
  validate(body: ReadableStream<Uint8Array>, spec: SubmitBodySpec): Promise<Result<DryRunReport, AppError>>;
}

/** Reads submit bodies on the calling thread. */
export function inlineBodyReader(settings: Settings): SubmitBodyReader {
  return {
    segments: (body, spec, mode) => checkedSegments(settings, submitBodyInput(body, spec), mode),
    validate: (body, spec) => validateBatch({ settings }, submitBodyInput(body, spec)),
  };
}
