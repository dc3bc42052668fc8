// The memory item a client submits, and the record a sink stores for it.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Tenant } from './batch.ts';
import type { FieldIssue, InvalidItem } from './errors.ts';
import { err, ok, type Result } from './result.ts';

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

export interface MemoryItem {
  content: string;
  type?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  external_id?: string | undefined;
}

const forbiddenKeys = new Set(['__proto__', 'constructor', 'prototype']);

/** Why a metadata value is unacceptable, or undefined when it is fine. */
export function metadataProblem(value: unknown, limits: MemoryLimits): string | undefined {
  if (!isPlainObject(value)) return 'must be a JSON object';
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

export function memoryItemSchema(limits: MemoryLimits = defaultMemoryLimits) {
  return z.strictObject({
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
      .superRefine((value, ctx) => {
        const problem = metadataProblem(value, limits);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    external_id: z.string().min(1).max(256).optional(),
  });
}

export type MemoryItemSchema = ReturnType<typeof memoryItemSchema>;

/** Validates one item; `index` is its 0-based position in the batch. */
export function validateMemoryItem(
  schema: MemoryItemSchema,
  value: unknown,
  index: number,
): Result<MemoryItem, InvalidItem> {
  if (isPlainObject(value) && Object.keys(value).some((key) => forbiddenKeys.has(key))) {
    return err({ kind: 'invalid_item', index, issues: [{ path: '', message: 'uses a forbidden key' }] });
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !isPlainObject(value)) {
    return err({ kind: 'invalid_item', index, issues: [{ path: '', message: 'is not a plain JSON object' }] });
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return ok(parsed.data);
  const issues: FieldIssue[] = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  return err({ kind: 'invalid_item', index, issues });
}

/** A memory's id depends only on its batch and position, so a retried segment never makes a second memory. */
export function memoryId(batchKey: string, index: number): string {
  return 'mem_' + createHash('sha256').update(`${batchKey}:${index}`).digest('hex').slice(0, 32);
}

export function contentHash(content: string): string {
  return createHash('sha256').update(content).digest('hex');
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
  contentHash: string;
  tenant: Tenant;
}

export function toMemoryRecord(batchKey: string, tenant: Tenant, index: number, item: MemoryItem): MemoryRecord {
  return {
    memoryId: memoryId(batchKey, index),
    batchKey,
    index,
    content: item.content,
    type: item.type ?? null,
    metadata: item.metadata ?? null,
    externalId: item.external_id ?? null,
    contentHash: contentHash(item.content),
    tenant,
  };
}
