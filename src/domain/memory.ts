// The memory item a client submits, and the record a sink stores for it.
import { hash } from 'node:crypto';
import { z } from 'zod';
import type { Tenant } from './tenant.ts';
import type { FieldIssue, InvalidItem } from './errors.ts';
import { err, ok, type Result } from './result.ts';
import { ExternalIdSet } from './external-id-set.ts';

export interface MemoryLimits {
  maxContentBytes: number;
  maxMetadataBytes: number;
  maxMetadataDepth: number;
}

export const defaultMemoryLimits: MemoryLimits = {
  maxContentBytes: 256 * 1024,
  maxMetadataBytes: 16 * 1024,
  maxMetadataDepth: 8,
};

/**
 * Fields a memory may carry besides its content, in the names of the Papr memory API (whose SDKs send them). They
 * are kept with the memory as sent and have no effect on processing here. A batch may give them once for all its
 * memories (`MemoryAttributes` as batch-level defaults); a memory's own value wins.
 */
export interface MemoryAttributes {
  context?: { role: 'user' | 'assistant'; content: string }[] | undefined;
  relationships_json?: { relation_type: string; [key: string]: unknown }[] | undefined;
  external_user_id?: string | undefined;
  user_id?: string | undefined;
  namespace_id?: string | undefined;
  organization_id?: string | undefined;
  graph_generation?: Record<string, unknown> | undefined;
  link_to?: string | string[] | Record<string, unknown> | undefined;
  memory_policy?: Record<string, unknown> | undefined;
  policy?: Record<string, unknown> | undefined;
}

export const memoryAttributeNames = [
  'context',
  'relationships_json',
  'external_user_id',
  'user_id',
  'namespace_id',
  'organization_id',
  'graph_generation',
  'link_to',
  'memory_policy',
  'policy',
] as const satisfies readonly (keyof MemoryAttributes)[];

export interface MemoryItem extends MemoryAttributes {
  content: string;
  type?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  external_id?: string | undefined;
}

const forbiddenKeys = new Set(['__proto__', 'constructor', 'prototype']);

/** Why a metadata value is unacceptable, or undefined when it is fine. */
export function metadataProblem(value: unknown, limits: MemoryLimits): string | undefined {
  if (!isPlainObject(value)) return 'must be a JSON object';
  return jsonProblem(value, limits);
}

/** Why a JSON value is unacceptable (not plain JSON, a forbidden key, too deep, too large), or undefined. */
export function jsonProblem(value: unknown, limits: MemoryLimits): string | undefined {
  // Depth counts containers: {"a": 1} is depth 1, {"a": {"b": 1}} depth 2.
  const walk = (node: unknown, depth: number): string | undefined => {
    if (node === null || typeof node !== 'object') return undefined;
    if (depth > limits.maxMetadataDepth) return `is nested deeper than ${limits.maxMetadataDepth} levels`;
    if (Array.isArray(node)) {
      for (const child of node) {
        const problem = walk(child, depth + 1);
        if (problem) return problem;
      }
      return undefined;
    }
    if (node !== null && typeof node === 'object') {
      if (!isPlainObject(node)) return 'holds a value that is not plain JSON';
      for (const key of Object.keys(node)) {
        if (forbiddenKeys.has(key)) return `uses the forbidden key "${key}"`;
        const problem = walk((node as Record<string, unknown>)[key], depth + 1);
        if (problem) return problem;
      }
    }
    return undefined;
  };
  const problem = walk(value, 1);
  if (problem) return problem;
  const bytes = Buffer.byteLength(JSON.stringify(value));
  return bytes > limits.maxMetadataBytes ? `is ${bytes} bytes, over the limit of ${limits.maxMetadataBytes}` : undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  // A parser that assigned "__proto__" may have swapped the prototype instead of adding a key.
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A JSON value checked like metadata (plain JSON, depth, size), for the Papr fields that hold free-form JSON. */
function jsonField<T>(limits: MemoryLimits, base: z.ZodType<T>) {
  return base.superRefine((value, ctx) => {
    const problem = jsonProblem(value, limits);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

// A custom check has no shape of its own; `meta` says what it accepts in JSON Schema terms (the API document is
// generated from these schemas).
const jsonObjectShape = { type: 'object', additionalProperties: {} } as const;
const plainObject = z.custom<Record<string, unknown>>(isPlainObject, 'must be a JSON object').meta(jsonObjectShape);
const identifier = z.string().min(1).max(256);

/**
 * The Papr fields' shapes and bounds. Free-form JSON (graph_generation, memory_policy, policy, relationships,
 * link_to as an object) obeys the metadata limits; ids are 1 to 256 characters; lists hold at most 100 entries.
 */
function attributeShape(limits: MemoryLimits) {
  return {
    context: jsonField(
      limits,
      z.array(z.strictObject({ role: z.enum(['user', 'assistant']), content: z.string().max(limits.maxContentBytes) })).max(100),
    ).optional(),
    relationships_json: jsonField(
      limits,
      z.array(z.looseObject({ relation_type: z.string().min(1).max(128) }).refine(isPlainObject, 'must be a JSON object')).max(100),
    ).optional(),
    external_user_id: identifier.optional(),
    user_id: identifier.optional(),
    namespace_id: identifier.optional(),
    organization_id: identifier.optional(),
    graph_generation: jsonField(limits, plainObject).optional(),
    link_to: jsonField(limits, z.union([z.string().min(1).max(1024), z.array(z.string().min(1).max(1024)).max(100), plainObject])).optional(),
    memory_policy: jsonField(limits, plainObject).optional(),
    policy: jsonField(limits, plainObject).optional(),
  };
}

/** Batch-level defaults for the Papr fields of every memory in the batch. */
export function memoryAttributesSchema(limits: MemoryLimits = defaultMemoryLimits) {
  return z.strictObject(attributeShape(limits));
}

/**
 * Why identity fields would widen the tenant, or undefined. An API key stands for one organization and namespace;
 * a memory may repeat them but never name others. `user_id` and `external_user_id` are attributes, not identity.
 */
export function tenantConflict(tenant: Tenant, attributes: MemoryAttributes): { path: string; message: string } | undefined {
  if (attributes.organization_id !== undefined && attributes.organization_id !== tenant.organization) {
    return { path: 'organization_id', message: "is not the API key's organization" };
  }
  if (attributes.namespace_id !== undefined && attributes.namespace_id !== tenant.namespace) {
    return { path: 'namespace_id', message: "is not the API key's namespace" };
  }
  return undefined;
}

/** The Papr fields a memory carries, or undefined when it has none. */
export function attributesOf(item: MemoryAttributes): MemoryAttributes | undefined {
  const picked: Record<string, unknown> = {};
  for (const name of memoryAttributeNames) if (item[name] !== undefined) picked[name] = item[name];
  return Object.keys(picked).length > 0 ? (picked as MemoryAttributes) : undefined;
}

/**
 * A copy without the keys whose value is null: clients generated from Papr's spec send `null` for an unset
 * optional field, which means "absent". `keep` names keys whose null stays (and is refused by the schema).
 */
export function withoutNulls(value: Record<string, unknown>, keep: readonly string[] = []): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (field !== null || keep.includes(key)) copy[key] = field;
  return copy;
}

export function memoryItemSchema(limits: MemoryLimits = defaultMemoryLimits) {
  return z.strictObject({
    ...attributeShape(limits),
    content: z
      .string()
      .refine((content) => content.trim().length > 0, 'must not be empty or only whitespace')
      .refine(
        (content) => Buffer.byteLength(content) <= limits.maxContentBytes,
        `must be at most ${limits.maxContentBytes} bytes`,
      ),
    type: z.string().min(1).max(64).optional(),
    metadata: z
      .custom<Record<string, unknown>>()
      .meta(jsonObjectShape)
      .superRefine((value, ctx) => {
        const problem = metadataProblem(value, limits);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    external_id: z.string().min(1).max(256).optional(),
  });
}

export type MemoryItemSchema = ReturnType<typeof memoryItemSchema>;

/** The limits each schema was made with, for the fast path of `validateMemoryItem`. */
const schemaLimits = new WeakMap<MemoryItemSchema, MemoryLimits>();

/** `memoryItemSchema`, remembered with its limits so that `validateMemoryItem` can check the common item without zod. */
export function memoryItemValidator(limits: MemoryLimits = defaultMemoryLimits): MemoryItemSchema {
  const schema = memoryItemSchema(limits);
  schemaLimits.set(schema, limits);
  return schema;
}

/**
 * The common memory (content, and any of type, metadata and external_id, none null) checked by hand against the same
 * rules as `memoryItemSchema`, and returned as zod returns it (fields in the schema's order). Undefined for anything
 * else, valid or not: zod then decides and words the problems, so the messages never depend on this shortcut.
 * Measured: zod's object parse was a tenth of the upload's CPU time (docs/benchmarks.md).
 */
function commonValidItem(value: Record<string, unknown>, limits: MemoryLimits): MemoryItem | undefined {
  let content: string | undefined;
  let type: string | undefined;
  let metadata: Record<string, unknown> | undefined;
  let externalId: string | undefined;
  for (const key in value) {
    const field = value[key];
    switch (key) {
      case 'content':
        if (typeof field !== 'string') return undefined;
        content = field;
        break;
      case 'type':
        if (typeof field !== 'string' || field.length < 1 || field.length > 64) return undefined;
        type = field;
        break;
      case 'metadata':
        if (metadataProblem(field, limits) !== undefined) return undefined;
        metadata = field as Record<string, unknown>;
        break;
      case 'external_id':
        if (typeof field !== 'string' || field.length < 1 || field.length > 256) return undefined;
        externalId = field;
        break;
      default:
        return undefined;
    }
  }
  if (content === undefined || content.trim().length === 0) return undefined;
  // A UTF-16 unit is at most 3 UTF-8 bytes: counting the bytes is needed only for a long content.
  if (content.length * 3 > limits.maxContentBytes && Buffer.byteLength(content) > limits.maxContentBytes) return undefined;
  const item: MemoryItem = { content };
  if (type !== undefined) item.type = type;
  if (metadata !== undefined) item.metadata = metadata;
  if (externalId !== undefined) item.external_id = externalId;
  return item;
}

/** Validates one item; `index` is its 0-based position in the batch. */
export function validateMemoryItem(
  schema: MemoryItemSchema,
  value: unknown,
  index: number,
): Result<MemoryItem, InvalidItem> {
  const limits = schemaLimits.get(schema);
  if (limits && isPlainObject(value)) {
    const common = commonValidItem(value, limits);
    if (common) return ok(common);
  }
  if (isPlainObject(value) && Object.keys(value).some((key) => forbiddenKeys.has(key))) {
    return err({ kind: 'invalid_item', index, issues: [{ path: '', message: 'uses a forbidden key' }] });
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !isPlainObject(value)) {
    return err({ kind: 'invalid_item', index, issues: [{ path: '', message: 'is not a plain JSON object' }] });
  }
  const parsed = schema.safeParse(isPlainObject(value) ? withoutNulls(value, ['content']) : value);
  if (parsed.success) return ok(parsed.data as MemoryItem);
  const issues: FieldIssue[] = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  return err({ kind: 'invalid_item', index, issues });
}

/** A memory's id depends only on its batch and position, so a retried segment never makes a second memory. */
export function memoryId(batchKey: string, index: number): string {
  return 'mem_' + hash('sha256', `${batchKey}:${index}`, 'hex').slice(0, 32);
}

export function contentHash(content: string): string {
  return hash('sha256', content, 'hex');
}

/**
 * What a batch does with a memory whose `external_id` the tenant already stored (batch option `on_existing`):
 * `update` replaces its content when something changed (default), `skip` leaves the stored memory as it is.
 */
export const onExistingModes = ['update', 'skip'] as const;
export type OnExisting = (typeof onExistingModes)[number];
export const defaultOnExisting: OnExisting = 'update';

/**
 * JSON with object keys sorted at every level, so equal values give equal text whatever their key order. Written as
 * plain loops: it runs for every memory processed, and the text must stay exactly what it has always been, since
 * stored fingerprints are compared with new ones (`Array.prototype.sort` on strings orders by UTF-16 code units).
 */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i += 1) text += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return text + ']';
  }
  const object = value as Record<string, unknown>;
  let text = '{';
  for (const key of Object.keys(object).sort()) {
    const field = object[key];
    if (field === undefined) continue;
    text += (text.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonicalJson(field);
  }
  return text + '}';
}

/**
 * SHA-256 (hex) of what makes a memory's stored value: content, type, metadata and the Papr fields. Two writes of
 * the same external id with the same fingerprint are the same memory (`unchanged`); any difference is an update.
 * Key order inside metadata does not count.
 */
export function memoryFingerprint(memory: Pick<MemoryRecord, 'content' | 'type' | 'metadata' | 'attributes'>): string {
  // The fields in canonicalJson's order; the sorted copy gives the same text in one JSON.stringify (one flat string,
  // where the loop's concatenations leave a rope that hashing must flatten again: 8.5 → 5.7 ms per 1,000 memories of
  // the bench corpus), with the loop as the fallback for what the copy cannot order.
  const fields = { a: memory.attributes, c: memory.content, m: memory.metadata, t: memory.type };
  const sorted = sortedForJson(fields);
  return hash('sha256', sorted === undefined ? canonicalJson(fields) : JSON.stringify(sorted), 'hex');
}

/**
 * The value with every object's keys in canonicalJson's order (`Array.prototype.sort` on strings), so that
 * `JSON.stringify` of it is canonicalJson of the value: objects already in order are kept as they are, the others
 * copied (without a prototype, so a `__proto__` key stays a key). Undefined when that cannot hold: an object with a
 * key starting with a digit (JSON.stringify lists integer-like keys first, in numeric order, whatever the insertion
 * order) or anything but plain objects and arrays.
 */
function sortedForJson(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i += 1) {
      const item: unknown = value[i];
      if (item === null || typeof item !== 'object') continue;
      const sorted = sortedForJson(item);
      if (sorted === undefined) return undefined;
      if (sorted !== item) (copy ??= value.slice())[i] = sorted;
    }
    return copy ?? value;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return undefined;
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  let inOrder = true;
  for (let i = 0; i < keys.length; i += 1) {
    const first = keys[i]!.charCodeAt(0);
    if (first >= 48 && first <= 57) return undefined;
    if (i > 0 && keys[i - 1]! > keys[i]!) inOrder = false;
  }
  if (!inOrder) keys.sort();
  let copy: Record<string, unknown> | undefined = inOrder ? undefined : (Object.create(null) as Record<string, unknown>);
  for (let i = 0; i < keys.length; i += 1) {
    const key = keys[i]!;
    const field = object[key];
    const sorted = field === null || typeof field !== 'object' ? field : sortedForJson(field);
    if (sorted === undefined && field !== undefined) return undefined;
    if (sorted !== field && copy === undefined) {
      // Keys so far were in order and kept as they are: the copy starts with them.
      copy = Object.create(null) as Record<string, unknown>;
      for (let j = 0; j < i; j += 1) copy[keys[j]!] = object[keys[j]!];
    }
    if (copy !== undefined) copy[key] = sorted;
  }
  return copy ?? value;
}

/**
 * Where two items of one batch share an `external_id`: the later one's index with the first one's, in body order.
 * A batch may name an external id once, since one memory cannot take two values in one run.
 */
export class ExternalIdTracker {
  /** One entry per id named, for the whole upload: kept compact (external-id-set.ts). */
  readonly #seen = new ExternalIdSet();

  /** The index of the earlier item with this external id, or undefined (and the id is remembered). */
  see(externalId: string | undefined, index: number): number | undefined {
    if (externalId === undefined) return undefined;
    return this.#seen.getOrAdd(externalId, index);
  }

  /** Forgets every id and frees their memory now; call once the body has been read (the tracker is empty after). */
  release(): void {
    this.#seen.clear();
  }
}

/** What a MemorySink stores for one item. */
export interface MemoryRecord {
  memoryId: string;
  batchKey: string;
  index: number;
  content: string;
  type: string | null;
  metadata: Record<string, unknown> | null;
  externalId: string | null;
  /** The Papr fields, the batch's defaults merged under the memory's own; null when there are none. */
  attributes: MemoryAttributes | null;
  contentHash: string;
  /** `memoryFingerprint` of the record: how a sink tells `unchanged` from `updated` for a known external id. */
  fingerprint: string;
  /** What to do when the tenant already stored this external id. */
  onExisting: OnExisting;
  tenant: Tenant;
}

export function toMemoryRecord(
  batchKey: string,
  tenant: Tenant,
  index: number,
  item: MemoryItem,
  defaults?: MemoryAttributes | null,
  onExisting: OnExisting = defaultOnExisting,
): MemoryRecord {
  const own = attributesOf(item);
  const attributes = defaults || own ? { ...defaults, ...own } : null;
  const stored = { content: item.content, type: item.type ?? null, metadata: item.metadata ?? null, attributes };
  return {
    memoryId: memoryId(batchKey, index),
    batchKey,
    index,
    ...stored,
    externalId: item.external_id ?? null,
    contentHash: contentHash(item.content),
    fingerprint: memoryFingerprint(stored),
    onExisting,
    tenant,
  };
}
