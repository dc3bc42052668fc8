// Submit: stream items into compressed segments in the payload store, record the batch, start it by reference.
import { createHash, randomBytes } from 'node:crypto';
import { type Batch, batchKey, batchMetadataIssues, parseCompletionWindow, type Tenant } from '../../domain/batch.ts';
import type { FieldIssue } from '../../domain/errors.ts';
import { abandonUpload, awaitsStart, endUpload, initialStatus, type StoredUpload, uploadOpen, uploadProgress } from '../../domain/lifecycle.ts';
import {
  describeInvalidItem,
  type InvalidItems,
  invalidItemLine,
  invalidItemsModes,
  readableExternalId,
  UnreadableItem,
} from '../../domain/invalid-items.ts';
import { releaseBuffer } from '../../domain/buffer-release.ts';
import { type Codec, encodeSegmentAsync, type RawSegment, Segmenter, codecContentEncoding, segmentKey } from '../../domain/codec.ts';
import { BodyFingerprint, dedupeBatchIds, withinWindow } from '../../domain/idempotency.ts';
import { ExternalIdTracker, type MemoryAttributes, type MemoryItem, memoryItemSchema, onExistingModes, type OnExisting, tenantConflict, validateMemoryItem, memoryItemValidator } from '../../domain/memory.ts';
import { type FailureLimits, parseFailureLimits } from '../../domain/failure-limits.ts';
import { checkWebhookUrl } from '../../domain/webhook-address.ts';
import { discardUpload } from '../processing/payload-leftovers.ts';
import type { OrchestratedServices, Settings } from '../services.ts';
import { changeBatch } from '../change-batch.ts';
import { withSpan } from '../tracing.ts';
import { type AppError, AppFailure, otherTenant, validation } from '../errors.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { emptyWriteCounts } from '../../domain/progress.ts';

export interface SubmitOptions {
  batchId?: string | undefined;
  idempotencyKey?: string | undefined;
  webhookUrl?: string | undefined;
  webhookSecret?: string | undefined;
  /** Batch-level values of the Papr memory fields (already validated), stored as defaults for every memory. */
  memoryDefaults?: MemoryAttributes | undefined;
  /** As sent: checked here (a string like "24h", bounded). */
  completionWindow?: unknown;
  /** As sent: checked here (at most 16 string pairs). */
  metadata?: unknown;
  /** As sent: checked here ("update" or "skip"). */
  onExisting?: unknown;
  /** As sent: checked here (domain/failure-limits.ts). */
  maxFailedItems?: unknown;
  maxFailedPercent?: unknown;
  /** As sent: checked here ("reject" or "record"). */
  invalidItems?: unknown;
}

export interface SubmitInput {
  tenant: Tenant;
  requestId: string;
  /** Raw items as parsed from the body; validated here. The source may throw AppFailure for a malformed body. */
  items: AsyncIterable<unknown>;
  /** Called once the items are consumed: a JSON body may carry its options after the memories. */
  options: () => SubmitOptions;
  /**
   * The options are known before the first item (NDJSON: query and headers), so that with `invalid_items: "record"`
   * the batch is recorded and started with its first stored segment. A JSON body's options may follow its memories:
   * it is processed once read.
   */
  optionsUpFront?: boolean;
  /** Where the item just read sits in the body, for its per-item failure (`line 17`); default `memories.<index>`. */
  position?: () => string | undefined;
}

export interface SubmitOutcome {
  batch: Batch;
  created: boolean;
  /** An earlier identical request's batch was answered (same key and body, or same body within the window). */
  replayed: boolean;
  /** Present once, when the server generated the webhook secret. */
  generatedSecret?: string;
}

/** Segments of one upload compressed and written while its next segment is read (each at most 1 MiB raw). */
const maxSegmentsInFlight = 2;

const webhookSecretPattern = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const plainSecretPattern = /^[\x21-\x7e]{16,256}$/;

/**
 * A webhook secret is either a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes) or, as Papr clients
 * send it, a plain one of 16 to 256 printable ASCII characters used as the raw HMAC key.
 */
export function checkWebhookSecret(secret: string): string | undefined {
  if (secret.startsWith('whsec_')) {
    if (!webhookSecretPattern.test(secret)) return 'must be "whsec_" followed by base64';
    const bytes = Buffer.from(secret.slice('whsec_'.length), 'base64').byteLength;
    return bytes >= 24 && bytes <= 64 ? undefined : `must encode 24 to 64 bytes, not ${bytes}`;
  }
  return plainSecretPattern.test(secret)
    ? undefined
    : 'must be "whsec_" followed by base64, or 16 to 256 printable ASCII characters without spaces';
}

function generatedId(): string {
  return 'b_' + randomBytes(16).toString('hex');
}

export function batchIdFor(tenant: Tenant, options: SubmitOptions, uploadId: string): string {
  if (options.batchId) return options.batchId;
  if (options.idempotencyKey) {
    return 'b_' + createHash('sha256').update(tenant.organization).update('\0').update(options.idempotencyKey).digest('hex').slice(0, 32);
  }
  return uploadId;
}

/**
 * Looks up the batch a repeated submission refers to, before its body is read. A batch made under an
 * Idempotency-Key with a recorded fingerprint (`bodyFingerprintOf`) is not returned: the new body must be read and
 * compared first.
 * A repeat that races a streamed (`invalid_items: "record"`) upload still open under that id is refused (409): the
 * first body is not all stored, so the repeat can be neither compared with it nor answered with its batch.
 */
export async function findExisting(
  services: OrchestratedServices,
  tenant: Tenant,
  options: SubmitOptions,
): Promise<Result<Batch | undefined, AppError>> {
  if (!options.batchId && !options.idempotencyKey) return ok(undefined);
  const batch = await namedBatch(services, tenant, options);
  if (batch && uploadOpen(batch)) {
    return err({ kind: 'wrong_state', detail: `batch ${batch.id} is still receiving its body; repeat the request once its upload has ended` });
  }
  if (batch && !options.batchId && bodyFingerprintOf(batch)) return ok(undefined);
  if (batch) await ensureStarted(services, batch);
  return ok(batch);
}

export async function submitBatch(services: OrchestratedServices, input: SubmitInput): Promise<Result<SubmitOutcome, AppError>> {
  const request: UploadRequest = { tenant: input.tenant, requestId: input.requestId, ...(input.optionsUpFront ? { upFront: input.options() } : {}) };
  return storeBatch(services, request, (mode) => checkedSegments(services.settings, input, mode));
}

/** A segment read and checked; its encoding (compression, header, checksum) runs off the event loop meanwhile. */
export interface PreparedSegment {
  firstIndex: number;
  itemCount: number;
  /** Bytes of its NDJSON before compression. */
  rawBytes: number;
  /** The stored form (codec.ts `encodeSegment`) and its SHA-256 in hex; rejects if the compression failed. */
  encoded: Promise<EncodedSegment>;
}

export interface EncodedSegment {
  body: Uint8Array;
  sha256Hex: string;
}

/** What reading the whole body gave besides its segments. */
export interface BodyRead {
  /** Items read, valid or recorded as invalid. */
  itemCount: number;
  /** The batch options, as the body or the query gave them (checked later, by the store stage). */
  options: SubmitOptions;
  /** The request's fingerprint (`finishFingerprint`); undefined when its options are invalid (it is refused then). */
  bodySha256: string | undefined;
}

/** The part of a submit that reads and checks its items; runs on the HTTP thread or the upload thread alike. */
export type ItemInput = Pick<SubmitInput, 'tenant' | 'items' | 'options' | 'position'>;

/**
 * Where a submit's checked segments come from, given its `invalid_items` mode as far as it is known before the body
 * (undefined: a JSON body, whose options may follow its memories). `checkedSegments` on this thread, or the same on
 * the upload thread (src/app/upload-thread.ts).
 */
export type SegmentSource = (mode: InvalidItems | undefined) => AsyncGenerator<PreparedSegment, BodyRead, undefined>;

/**
 * The read-and-check stage of a submit: every item through `checkItem`, serialized into segments of at most
 * `segmentMaxItems` items and `segmentMaxRawBytes` bytes, each yielded with its encoding under way, and the body's
 * fingerprint fed as it goes. Returns the item count, the options and the fingerprint once the body is read.
 * Throws AppFailure with what the submit answers: the first invalid item (`reject`), a malformed body, too many
 * memories. With `mode` undefined an invalid item is kept as `record` would keep it until the options say which.
 * Stops reading when its consumer stops asking (`return()`), which cancels the body.
 */
export async function* checkedSegments(
  settings: Settings,
  input: ItemInput,
  mode: InvalidItems | undefined,
): AsyncGenerator<PreparedSegment, BodyRead, undefined> {
  const schema = memoryItemValidator(settings.memoryLimits);
  const segmenter = new Segmenter({ maxItems: settings.segmentMaxItems, maxRawBytes: settings.segmentMaxRawBytes });
  const fingerprint = new BodyFingerprint();
  const externalIds = new ExternalIdTracker();
  // Until `invalid_items` is known, `firstRejection` is what `reject` answers (the same answer as stopping at that
  // item: whatever came after it in the body is not looked at).
  let firstRejection: AppError | undefined;
  const rejectionOr = (error: AppError) => (mode === undefined && firstRejection ? firstRejection : error);
  const prepare = (raw: RawSegment): PreparedSegment => {
    fingerprint.addLines(raw.ndjson);
    const encoded = encodeSegmentAsync(raw.ndjson, {
      codec: settings.codec,
      level: settings.codecLevel,
      firstIndex: raw.firstIndex,
      itemCount: raw.itemCount,
    }).then((body) => {
      // Hashed into the fingerprint and compressed: the raw segment (the Segmenter's buffer, made for this segment
      // alone) is freed now rather than at this thread's next full collection (buffer-release.ts).
      releaseBuffer(raw.ndjson);
      return { body, sha256Hex: createHash('sha256').update(body).digest('hex') };
    });
    // Awaited in order by the store stage; a segment it never asks for (the upload stopped) must not count as unhandled.
    encoded.catch(() => undefined);
    return { firstIndex: raw.firstIndex, itemCount: raw.itemCount, rawBytes: raw.ndjson.byteLength, encoded };
  };
  try {
    let index = 0;
    for await (const raw of input.items) {
      if (index >= settings.maxMemoriesPerBatch) {
        throw new AppFailure({ kind: 'too_large', detail: `a batch holds at most ${settings.maxMemoriesPerBatch} memories` });
      }
      const checked = checkItem(schema, input.tenant, externalIds, raw, index);
      let line: string;
      if (checked.ok) line = JSON.stringify(checked.value);
      else if (mode === 'reject') {
        // An NDJSON body names its lines (as its unreadable lines do): "line 3: memory 2 is invalid: ...".
        const at = input.position?.();
        throw new AppFailure(at && checked.error.kind === 'validation' ? { ...checked.error, detail: `${at}: ${checked.error.detail}` } : checked.error);
      } else {
        firstRejection ??= checked.error;
        const where = input.position?.() ?? `memories.${index}`;
        line = invalidItemLine({ externalId: readableExternalId(raw), error: describeInvalidItem(where, checked.issues) });
      }
      for (const full of segmenter.add(line)) yield prepare(full);
      index += 1;
    }
    if (firstRejection && mode === undefined) {
      const chosen = resolveInvalidItems(input.options().invalidItems);
      if (!chosen.ok || chosen.value !== 'record') throw new AppFailure(firstRejection);
    }
    const last = segmenter.finish();
    if (last) yield prepare(last);
    const options = input.options();
    const extras = resolveExtras(options);
    return { itemCount: segmenter.itemCount, options, bodySha256: extras.ok ? finishFingerprint(fingerprint, options, extras.value) : undefined };
  } catch (cause) {
    if (cause instanceof AppFailure) throw new AppFailure(rejectionOr(cause.error), cause.cause);
    throw cause;
  } finally {
    // Needed only while the body is read; its memory (55 MiB at 1,000,000 memories) is given back now, not at this
    // thread's next full collection, which after a large upload came only minutes later (docs/benchmarks.md).
    externalIds.release();
  }
}

/** Who submits, and the options when they are known before the body (NDJSON: query and headers). */
export interface UploadRequest {
  tenant: Tenant;
  requestId: string;
  /**
   * Present when the options come before the first item, so that with `invalid_items: "record"` the batch is
   * recorded and started with its first stored segment. A JSON body's options may follow its memories: it is
   * processed once read.
   */
  upFront?: SubmitOptions;
}

/**
 * The store stage of a submit: takes the checked segments `source` yields, writes each to the payload store in body
 * order (the next ones read and encoded meanwhile), then records the batch and starts it by its key (the claim
 * check). A streamed batch (`record`, options up front) is recorded with its first segment and grows with each.
 * Whatever fails, nothing of a refused upload stays behind (its segments are deleted, or swept later).
 */
export async function storeBatch(services: OrchestratedServices, request: UploadRequest, source: SegmentSource): Promise<Result<SubmitOutcome, AppError>> {
  const { settings } = services;
  const uploadId = generatedId();
  const prefix = `${encodeURIComponent(request.tenant.organization)}/${uploadId}`;
  const stored: StoredUpload = { segments: 0, rawBytes: 0, storedBytes: 0, received: 0 };

  // `invalid_items` as far as it is known: up front for NDJSON; for a JSON body only once it is read (the source
  // decides then).
  let mode: InvalidItems | undefined;
  /** Processed as it streams (`record`, options up front): recorded and started with its first stored segment. */
  let streams = false;
  if (request.upFront) {
    const upFront = resolveInvalidItems(request.upFront.invalidItems);
    if (!upFront.ok) return err(upFront.error);
    mode = upFront.value;
    // A repeat under an Idempotency-Key whose batch exists is read whole instead, then compared with that batch's
    // fingerprint: it is answered with the batch (same request) or refused (another body), never streamed into it.
    streams = mode === 'record' && !(await repeatsKeyedBatch(services, request.tenant, request.upFront));
  }
  /** Set once a streamed batch is recorded: its segments are processed as they land. */
  let live: Batch | undefined;
  /** The upload stopped because the batch did (its client cancelled it while it streamed). */
  let closed = false;

  // Segments are written while the next ones are read (`maxSegmentsInFlight` at most, so memory stays bounded); they
  // count as stored in body order, once written. A streamed batch publishes each segment as it lands, so it writes
  // one at a time.
  const inFlight = streams ? 0 : maxSegmentsInFlight;
  const pending: { segment: PreparedSegment; written: Promise<number> }[] = [];
  const write = async (segment: PreparedSegment, index: number): Promise<number> => {
    const { body, sha256Hex } = await segment.encoded;
    const storedBytes = body.byteLength;
    await services.payloads.put(segmentKey(prefix, index, settings.codec), body, {
      sha256Hex,
      contentType: 'application/x-ndjson',
      contentEncoding: codecContentEncoding[settings.codec],
    });
    // Stored, and a store keeps no reference to it (payload-store.ts): freed now rather than at this thread's next
    // full collection, for which the HTTP thread, with little else to collect, held up to 40 MiB of written segments.
    releaseBuffer(body);
    return storedBytes;
  };
  /** Waits for the oldest segment in flight and counts it as stored (throws what its write threw). */
  const settleOldest = async () => {
    const { segment, written } = pending.shift()!;
    const storedBytes = await written;
    stored.segments += 1;
    stored.rawBytes += segment.rawBytes;
    stored.storedBytes += storedBytes;
    stored.received += segment.itemCount;
    if (streams) await publish();
  };
  const store = async (segment: PreparedSegment) => {
    const written = write(segment, stored.segments + pending.length);
    // Awaited in order by settleOldest; until then a failure must not count as unhandled.
    written.catch(() => undefined);
    pending.push({ segment, written });
    while (pending.length > inFlight) await settleOldest();
  };
  /** Before the upload's files are removed: no write may still be running (it would leave a file behind). */
  const quiesce = async () => {
    await Promise.allSettled(pending.map((segment) => segment.written));
    pending.length = 0;
  };
  /** Makes the stored segments known to the runner: records and starts the batch with the first, then grows it. */
  const publish = async () => {
    if (!live) {
      const recorded = await recordStreamed(services, request, request.upFront!, prefix, uploadId, stored);
      if (!recorded.ok) throw new AppFailure(recorded.error);
      live = recorded.value;
      return;
    }
    let refused = false;
    live = (await changeBatch(services.batches, live.key, (current) => {
      const step = uploadProgress(current, stored, services.clock.now().toISOString());
      refused = !step.ok;
      return step.ok ? step.value : undefined;
    })) ?? live;
    if (refused) closed = true;
  };
  // The client's answer is the outcome of its request: a cleanup that fails is reported and swept later, not answered.
  const removeUpload = async () => {
    await quiesce();
    await discardUpload(services.payloads, services.leftovers, prefix);
  };
  const discard = async (error: AppError) => {
    if (live) return abandon(live, error);
    await removeUpload();
    return err(error);
  };
  /** A streamed batch whose body failed part-way: it is cancelled with what it processed (its segments stay). */
  const abandon = async (batch: Batch, error: AppError) => {
    await changeBatch(services.batches, batch.key, (current) => {
      const step = abandonUpload(current, stored, error.detail);
      return step.ok ? step.value : undefined;
    });
    await services.orchestrator.cancel(batch.key);
    return err(error);
  };

  let read: BodyRead;
  const segments = source(mode);
  try {
    for (;;) {
      const step = await segments.next();
      if (step.done) {
        read = step.value;
        break;
      }
      await store(step.value);
      if (closed) break;
    }
    if (closed && live) {
      // Cancelled while it streamed: the rest of the body is not read; the batch ends cancelled by itself.
      await segments.return(undefined as never).catch(() => undefined);
      return ok({ batch: live, created: true, replayed: false });
    }
    while (pending.length > 0) await settleOldest();
  } catch (cause) {
    // A failed write stops the reading too (its body is cancelled); a failed read has stopped already.
    await segments.return(undefined as never).catch(() => undefined);
    if (cause instanceof AppFailure) return discard(cause.error);
    if (live) {
      await abandon(live, { kind: 'backend_unavailable', detail: 'the upload could not be stored' }).catch(() => undefined);
      throw cause;
    }
    await removeUpload();
    throw cause;
  }
  const { options, bodySha256 } = read!;

  if (live) {
    const streamed: Batch = live;
    // Its options were checked when it was recorded (recordStreamed): they resolve here as they did there.
    const extras = resolveExtras(options);
    if (!extras.ok) return discard(extras.error);
    // Refused when the batch was cancelled meanwhile: it then ends cancelled as asked, with the total it had.
    const ended = await changeBatch(services.batches, streamed.key, (current) => {
      const step = endUpload(current, stored, bodySha256!);
      return step.ok ? step.value : undefined;
    });
    return ok({ batch: ended ?? streamed, created: true, replayed: false });
  }

  const total = read!.itemCount;
  if (total === 0) return discard(emptyBatch());
  const webhook = resolveWebhook(services, options);
  if (!webhook.ok) return discard(webhook.error);
  const extras = resolveExtras(options);
  if (!extras.ok) return discard(extras.error);
  const createdAt = services.clock.now();
  const defaults = options.memoryDefaults;
  const conflict = defaults ? tenantConflict(request.tenant, defaults) : undefined;
  if (conflict) return discard(otherTenant(`${conflict.path} ${conflict.message}`));

  let id = batchIdFor(request.tenant, options, uploadId);
  const windowMs = settings.dedupeWindowMs;
  const dedupe = !options.batchId && !options.idempotencyKey && windowMs > 0;
  if (dedupe) {
    const nowMs = services.clock.now().getTime();
    const ids = dedupeBatchIds(request.tenant, bodySha256!, nowMs, windowMs);
    for (const candidateId of [ids.current, ids.previous]) {
      const earlier = await services.batches.get(batchKey(request.tenant.organization, candidateId));
      if (earlier && withinWindow(earlier.createdAt, nowMs, windowMs)) {
        await removeUpload();
        return ok({ batch: await ensureStarted(services, earlier), created: false, replayed: true });
      }
    }
    id = ids.current;
  }
  const candidate: Batch = {
    ...batchRecord(request, options, { id, prefix, codec: settings.codec, createdAt, total, webhook: webhook.value, extras: extras.value, stored }),
    fingerprint: bodySha256!,
  };
  let recorded: Awaited<ReturnType<typeof services.batches.create>>;
  try {
    recorded = await services.batches.create(candidate);
  } catch (cause) {
    // The batch store failed (locked, down): no record points at these segments, so they must not stay behind.
    await removeUpload();
    throw new AppFailure({ kind: 'backend_unavailable', detail: 'the batch store could not record the batch; nothing was kept, retry later' }, cause);
  }
  const { created, batch } = recorded;
  if (!created) {
    // A repeated submission: the first one's payload is the batch; this copy is not needed.
    await removeUpload();
    const earlier = bodyFingerprintOf(batch);
    if (options.idempotencyKey && !options.batchId && earlier && earlier !== bodySha256) {
      // Answering the old batch would tell the client its new request was done.
      return err({ kind: 'idempotency_key_reused', detail: 'this Idempotency-Key was used for a different request body; use a new key for a new batch' });
    }
    return ok({ batch: await ensureStarted(services, batch), created: false, replayed: true });
  }
  const started = await ensureStarted(services, batch);
  const outcome: SubmitOutcome = { batch: started, created: true, replayed: false };
  if (webhook.value.generated && webhook.value.secret) outcome.generatedSecret = webhook.value.secret;
  return ok(outcome);
}

type CheckedItem = { ok: true; value: MemoryItem } | { ok: false; error: AppError; issues: FieldIssue[] };

/** One raw item through every per-item rule: the schema, the tenant's own fields, external ids named once. */
function checkItem(schema: ReturnType<typeof memoryItemSchema>, tenant: Tenant, externalIds: ExternalIdTracker, raw: unknown, index: number): CheckedItem {
  if (raw instanceof UnreadableItem) {
    return { ok: false, error: validation(raw.issues.map((i) => `${i.path} ${i.message}`).join('; '), raw.issues), issues: raw.issues };
  }
  const item = validateMemoryItem(schema, raw, index);
  if (!item.ok) {
    const issues = item.error.issues.map((issue) => ({
      path: ['memories', index, issue.path].filter((part) => part !== '').join('.'),
      message: issue.message,
    }));
    return { ok: false, error: validation(`memory ${index} is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues), issues };
  }
  const conflict = tenantConflict(tenant, item.value);
  if (conflict) {
    const path = `memories.${index}.${conflict.path}`;
    return { ok: false, error: otherTenant(`${path} ${conflict.message}`), issues: [{ path, message: conflict.message }] };
  }
  const repeated = duplicateExternalId(externalIds, item.value, index);
  if (repeated) return { ok: false, error: validation(`${repeated.path} ${repeated.message}`, [repeated]), issues: [repeated] };
  return { ok: true, value: item.value };
}

interface RecordParts {
  id: string;
  prefix: string;
  codec: Codec;
  createdAt: Date;
  total: number;
  webhook: { url: string | null; secret: string | null };
  extras: Extras;
  stored: StoredUpload;
}

/** The request's fingerprint: its memories as stored (fed segment by segment) and every option that shapes the batch. */
function finishFingerprint(fingerprint: BodyFingerprint, options: SubmitOptions, extras: Extras): string {
  return fingerprint.finish({
    batch_id: options.batchId,
    webhook_url: options.webhookUrl,
    webhook_secret: options.webhookSecret,
    defaults: options.memoryDefaults,
    completion_window: extras.window?.text,
    metadata: extras.metadata,
    on_existing: extras.onExisting,
    failure_limits: extras.failureLimits ?? undefined,
    ...(extras.invalidItems ? { invalid_items: extras.invalidItems } : {}),
  });
}

/** The fingerprint a batch's request left: recorded with the batch, or (streamed) when its upload ended; else none. */
function bodyFingerprintOf(batch: Batch): string | undefined {
  return batch.fingerprint ?? batch.upload?.bodySha256 ?? undefined;
}

/** The batch this request's `batch_id` or Idempotency-Key names, if it exists. */
function namedBatch(services: OrchestratedServices, tenant: Tenant, options: SubmitOptions): Promise<Batch | undefined> {
  return services.batches.get(batchKey(tenant.organization, batchIdFor(tenant, options, '')));
}

/** True when a batch already exists under this request's Idempotency-Key (and the request names no batch id). */
async function repeatsKeyedBatch(services: OrchestratedServices, tenant: Tenant, options: SubmitOptions): Promise<boolean> {
  if (!options.idempotencyKey || options.batchId) return false;
  return (await namedBatch(services, tenant, options)) !== undefined;
}

/** The new batch record (without its body fingerprint) from the checked options and what was stored. */
function batchRecord(input: Pick<UploadRequest, 'tenant' | 'requestId'>, options: SubmitOptions, parts: RecordParts): Batch {
  const { extras, stored } = parts;
  return {
    key: batchKey(input.tenant.organization, parts.id),
    id: parts.id,
    requestId: input.requestId,
    tenant: input.tenant,
    status: initialStatus,
    version: 1,
    createdAt: parts.createdAt.toISOString(),
    startedAt: null,
    completedAt: null,
    counts: { total: parts.total, processed: 0, succeeded: 0, failed: 0 },
    written: emptyWriteCounts(),
    payload: { codec: parts.codec, prefix: parts.prefix, segments: stored.segments, rawBytes: stored.rawBytes, storedBytes: stored.storedBytes },
    workflowId: null,
    webhook: { url: parts.webhook.url, secret: parts.webhook.secret, delivered: false, attempts: 0, lastError: null },
    error: null,
    memoryDefaults: options.memoryDefaults ?? null,
    fingerprint: null,
    completionWindow: extras.window?.text ?? null,
    expiresAt: extras.window ? new Date(parts.createdAt.getTime() + extras.window.ms).toISOString() : null,
    metadata: extras.metadata,
    ...(extras.onExisting ? { onExisting: extras.onExisting } : {}),
    ...(extras.failureLimits ? { failureLimits: extras.failureLimits } : {}),
    ...(extras.invalidItems ? { invalidItems: extras.invalidItems } : {}),
  };
}

/**
 * Records and starts a streamed batch with its first stored segment: its upload open, its total what was stored.
 * Its options are all known (they came before the body); its body fingerprint is not (the body is still arriving),
 * so a repeat is recognised by its batch id or Idempotency-Key only, not by its body.
 */
async function recordStreamed(
  services: OrchestratedServices,
  input: UploadRequest,
  options: SubmitOptions,
  prefix: string,
  uploadId: string,
  stored: StoredUpload,
): Promise<Result<Batch, AppError>> {
  const webhook = resolveWebhook(services, options);
  if (!webhook.ok) return webhook;
  const extras = resolveExtras(options);
  if (!extras.ok) return extras;
  const defaults = options.memoryDefaults;
  const conflict = defaults ? tenantConflict(input.tenant, defaults) : undefined;
  if (conflict) return err(otherTenant(`${conflict.path} ${conflict.message}`));
  const id = batchIdFor(input.tenant, options, uploadId);
  const parts = { id, prefix, codec: services.settings.codec, createdAt: services.clock.now(), total: stored.received, webhook: webhook.value, extras: extras.value, stored };
  const candidate: Batch = { ...batchRecord(input, options, parts), upload: { complete: false, received: stored.received, storedAt: parts.createdAt.toISOString() } };
  let recorded: Awaited<ReturnType<typeof services.batches.create>>;
  try {
    recorded = await services.batches.create(candidate);
  } catch (cause) {
    throw new AppFailure({ kind: 'backend_unavailable', detail: 'the batch store could not record the batch; nothing was kept, retry later' }, cause);
  }
  if (!recorded.created) {
    return err({ kind: 'wrong_state', detail: `batch ${id} exists already; a streamed upload cannot be repeated into it` });
  }
  return ok(await ensureStarted(services, recorded.batch));
}

/** `invalid_items` checked: absent is `reject`. */
function resolveInvalidItems(value: unknown): Result<InvalidItems, AppError> {
  if (value === undefined) return ok('reject');
  if ((invalidItemsModes as readonly unknown[]).includes(value)) return ok(value as InvalidItems);
  const message = `must be one of ${invalidItemsModes.map((mode) => `"${mode}"`).join(', ')}`;
  return err(validation(`invalid_items ${message}`, [{ path: 'invalid_items', message }]));
}

/** The issue for an item repeating an earlier item's external id, naming both indexes; undefined when it does not. */
function duplicateExternalId(tracker: ExternalIdTracker, item: MemoryItem, index: number): FieldIssue | undefined {
  const earlier = tracker.see(item.external_id, index);
  if (earlier === undefined) return undefined;
  return { path: `memories.${index}.external_id`, message: `repeats the external_id of memories.${earlier}; a batch may name an external_id once` };
}

function emptyBatch(): AppError {
  return validation('a batch needs at least one memory', [{ path: 'memories', message: 'is empty' }]);
}

const reservedKeys = new Set(['__proto__', 'constructor', 'prototype']);

interface Extras {
  window: { text: string; ms: number } | undefined;
  metadata: Record<string, string>;
  onExisting: OnExisting | undefined;
  failureLimits: FailureLimits | null;
  /** Absent when not given (the default, `reject`), so that earlier bodies keep their fingerprint. */
  invalidItems: InvalidItems | undefined;
}

/** The batch options other than the webhook, checked; the first problem found is the error (as for items). */
function resolveExtras(options: SubmitOptions): Result<Extras, AppError> {
  let window: { text: string; ms: number } | undefined;
  let onExisting: OnExisting | undefined;
  const limits = parseFailureLimits(options);
  if (!limits.ok) return err(validation(limits.issues.map((i) => `${i.path} ${i.message}`).join('; '), limits.issues));
  const failureLimits = limits.limits;
  let invalidItems: InvalidItems | undefined;
  if (options.invalidItems !== undefined) {
    const mode = resolveInvalidItems(options.invalidItems);
    if (!mode.ok) return mode;
    invalidItems = mode.value;
  }
  if (options.onExisting !== undefined) {
    if (!(onExistingModes as readonly unknown[]).includes(options.onExisting)) {
      const message = `must be one of ${onExistingModes.map((mode) => `"${mode}"`).join(', ')}`;
      return err(validation(`on_existing ${message}`, [{ path: 'on_existing', message }]));
    }
    onExisting = options.onExisting as OnExisting;
  }
  if (options.completionWindow !== undefined) {
    const parsed = parseCompletionWindow(options.completionWindow);
    if (!parsed.ok) return err(validation(`completion_window ${parsed.message}`, [{ path: 'completion_window', message: parsed.message }]));
    window = { text: options.completionWindow as string, ms: parsed.ms };
  }
  if (options.metadata === undefined) return ok({ window, metadata: {}, onExisting, failureLimits, invalidItems });
  const issues = batchMetadataIssues(options.metadata);
  for (const key of Object.keys(options.metadata as object)) {
    if (reservedKeys.has(key)) issues.unshift({ path: `metadata.${key}`, message: 'is a reserved name' });
  }
  if (issues.length > 0) return err(validation(`metadata is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`, issues));
  // Own string pairs copied into a fresh object: nothing of the parsed value's prototype comes along.
  return ok({ window, metadata: Object.fromEntries(Object.entries(options.metadata as Record<string, string>)), onExisting, failureLimits, invalidItems });
}

/** One problem a dry run found: the item's 0-based index or the NDJSON line (1-based) when it has one, and the path. */
export interface DryRunIssue extends FieldIssue {
  index?: number;
  line?: number;
}

export interface DryRunReport {
  valid: boolean;
  /** Items read (all of them, unless the body itself was malformed part-way). */
  total: number;
  /** The first `dryRunMaxErrors` problems, in body order. */
  errors: DryRunIssue[];
}

export const dryRunMaxErrors = 100;

function issuesOf(error: AppError, index?: number): DryRunIssue[] {
  const issues: FieldIssue[] = error.kind === 'validation' && error.errors.length > 0 ? error.errors : [{ path: '', message: error.detail }];
  return issues.map((issue) => {
    const line = /^line (\d+)$/.exec(issue.path);
    // A body-level refusal that names a memory (an I-JSON violation inside it) reports that memory's index too.
    const named = /^memories\.(\d+)(\.|$)/.exec(issue.path);
    const at = index ?? (named ? Number(named[1]) : undefined);
    return { ...(at !== undefined ? { index: at } : {}), ...(line ? { line: Number(line[1]) } : {}), ...issue };
  });
}

/**
 * `?validate_only=true`: reads the whole body through the same checks as `submitBatch` and reports what it finds,
 * storing nothing (no payload, no record, no run). Problems a real submit answers with 400 are reported in the
 * answer; the others (too many memories, a body over the limit) are the same error as for a real submit.
 */
export async function validateBatch(
  services: { settings: Settings },
  input: Pick<SubmitInput, 'tenant' | 'items' | 'options' | 'position'>,
): Promise<Result<DryRunReport, AppError>> {
  const { settings } = services;
  const schema = memoryItemValidator(settings.memoryLimits);
  const errors: DryRunIssue[] = [];
  const note = (issues: DryRunIssue[]) => errors.push(...issues.slice(0, dryRunMaxErrors - errors.length));
  let total = 0;
  let bodyComplete = true;
  const externalIds = new ExternalIdTracker();
  try {
    for await (const raw of input.items) {
      if (total >= settings.maxMemoriesPerBatch) {
        return err({ kind: 'too_large', detail: `a batch holds at most ${settings.maxMemoriesPerBatch} memories` });
      }
      const item = raw instanceof UnreadableItem ? undefined : validateMemoryItem(schema, raw, total);
      if (!item) {
        // With invalid_items: record, the reader hands over a line it could not parse instead of refusing the body.
        const at = input.position?.();
        note((raw as UnreadableItem).issues.map((issue) => ({ index: total, ...(at ? { line: Number(at.replace('line ', '')) } : {}), ...issue, path: issue.path || at || '' })));
      } else if (!item.ok) {
        note(item.error.issues.map((issue) => ({
          index: total,
          path: ['memories', total, issue.path].filter((part) => part !== '').join('.'),
          message: issue.message,
        })));
      } else {
        // A memory naming another tenant is refused (403) as by a real submit, not reported.
        const conflict = tenantConflict(input.tenant, item.value);
        if (conflict) return err(otherTenant(`memories.${total}.${conflict.path} ${conflict.message}`));
        const repeated = duplicateExternalId(externalIds, item.value, total);
        if (repeated) note([{ index: total, ...repeated }]);
      }
      total += 1;
    }
  } catch (cause) {
    if (!(cause instanceof AppFailure) || cause.error.kind !== 'validation') throw cause;
    note(issuesOf(cause.error));
    bodyComplete = false;
  } finally {
    externalIds.release();
  }
  if (bodyComplete) {
    let options: SubmitOptions | undefined;
    try {
      options = input.options();
    } catch (cause) {
      if (!(cause instanceof AppFailure) || cause.error.kind !== 'validation') throw cause;
      note(issuesOf(cause.error));
    }
    if (total === 0) note(issuesOf(emptyBatch()));
    if (options) {
      const webhook = resolveWebhook(services, options);
      if (!webhook.ok) note(issuesOf(webhook.error));
      const conflict = options.memoryDefaults ? tenantConflict(input.tenant, options.memoryDefaults) : undefined;
      if (conflict && errors.length === 0) return err(otherTenant(`${conflict.path} ${conflict.message}`));
      const extras = resolveExtras(options);
      if (!extras.ok) note(issuesOf(extras.error));
    }
  }
  return ok({ valid: errors.length === 0, total, errors });
}

function resolveWebhook(
  services: { settings: Settings },
  options: SubmitOptions,
): Result<{ url: string | null; secret: string | null; generated: boolean }, AppError> {
  if (!options.webhookUrl) {
    if (options.webhookSecret) return err(validation('webhook_secret needs a webhook_url', [{ path: 'webhook_secret', message: 'given without webhook_url' }]));
    return ok({ url: null, secret: null, generated: false });
  }
  const url = checkWebhookUrl(options.webhookUrl, { allowPrivate: services.settings.allowPrivateWebhooks });
  if (!url.ok) return err(validation(`webhook_url ${url.error}`, [{ path: 'webhook_url', message: url.error }]));
  if (options.webhookSecret) {
    const problem = checkWebhookSecret(options.webhookSecret);
    if (problem) return err(validation(`webhook_secret ${problem}`, [{ path: 'webhook_secret', message: problem }]));
    return ok({ url: url.value.toString(), secret: options.webhookSecret, generated: false });
  }
  return ok({ url: url.value.toString(), secret: 'whsec_' + randomBytes(32).toString('base64'), generated: true });
}

/** Starts (or re-starts, idempotently) the batch's run and records the workflow id. */
async function ensureStarted(services: OrchestratedServices, batch: Batch): Promise<Batch> {
  if (!awaitsStart(batch.status)) return batch;
  const { workflowId } = await withSpan('batchmem.orchestrator.start', { 'batchmem.batch_key': batch.key }, () => services.orchestrator.start(batch.key, { organization: batch.tenant.organization }));
  if (batch.workflowId === workflowId) return batch;
  return (await changeBatch(services.batches, batch.key, (current) => (current.workflowId ? undefined : { workflowId }))) ?? batch;
}
