// API keys and the tenant each one stands for. Lookups go by the key's SHA-256, so no key is compared byte by byte.
// A keys file holds entries of two kinds: `{id, sha256, ...tenant}` written by `batchmem keys create` (the key itself
// is shown once and never stored, so a leaked file grants nothing), and the older `{key, ...tenant}` with the key in
// plain text (BATCHMEM_API_KEYS, files written by hand, the key generated on the embedded default's first start).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { Tenant } from '../domain/batch.ts';
import { apiKeySchema, type Config, ConfigError } from './config.ts';

export interface ApiKeyring {
  tenantFor(key: string): Tenant | undefined;
  size: number;
}

/** A key as the server holds it: the SHA-256 (hex) of the key and its tenant. */
export interface KeyEntry extends Tenant {
  sha256: string;
}

const tenantFields = {
  organization: z.string().min(1).max(128),
  namespace: z.string().min(1).max(128).default('default'),
  user: z.string().min(1).max(128),
  workspace: z.string().min(1).max(128).default('default'),
};

export const hashedKeySchema = z.strictObject({
  id: z.string().regex(/^key_[0-9a-f]{8,32}$/, 'must be key_ and hex'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
  ...tenantFields,
  created_at: z.iso.datetime().optional(),
});
export type HashedKey = z.infer<typeof hashedKeySchema>;

const storedKeySchema = z.union([apiKeySchema, hashedKeySchema]);
type StoredKey = z.infer<typeof storedKeySchema>;

export function digest(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function tenantOf(entry: Tenant): Tenant {
  return { organization: entry.organization, namespace: entry.namespace, user: entry.user, workspace: entry.workspace };
}

function toEntry(stored: StoredKey): KeyEntry {
  return { ...tenantOf(stored), sha256: 'key' in stored ? digest(stored.key) : stored.sha256 };
}

/** The id `keys list` and `keys revoke` use: stored with a hashed entry, derived from the digest for a plaintext one. */
function idOf(stored: StoredKey): string {
  return 'key' in stored ? `key_${digest(stored.key).slice(0, 12)}` : stored.id;
}

/** Plaintext entries (`{key, ...}`) are hashed here, so the keyring only ever holds digests. */
export function keyring(keys: (KeyEntry | (Tenant & { key: string }))[]): ApiKeyring {
  const bySha256 = new Map(keys.map((k) => ['key' in k ? digest(k.key) : k.sha256, tenantOf(k)]));
  return { tenantFor: (key) => bySha256.get(digest(key)), size: bySha256.size };
}

function parseStored(text: string, source: string, minimum: number): StoredKey[] {
  // A server with no key would refuse every request: say so and how to fix it, instead of a schema message.
  const empty = `${source} holds no API key; add one with \`batchmem keys create\``;
  if (minimum > 0 && text.trim() === '') throw new ConfigError(empty);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`${source} is not valid JSON`);
  }
  if (minimum > 0 && Array.isArray(json) && json.length === 0) throw new ConfigError(empty);
  const parsed = z.array(storedKeySchema).min(minimum).safeParse(json);
  // The message names fields, never values: the values are secrets.
  if (!parsed.success) {
    throw new ConfigError(`${source} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Where the keys live when none are given in BATCHMEM_API_KEYS: BATCHMEM_API_KEYS_FILE, else the data folder. */
export function keysFilePath(config: Pick<Config, 'BATCHMEM_API_KEYS_FILE' | 'BATCHMEM_DATA_DIR'>): string {
  return config.BATCHMEM_API_KEYS_FILE ?? join(config.BATCHMEM_DATA_DIR, 'api-keys.json');
}

/**
 * Keys from BATCHMEM_API_KEYS or BATCHMEM_API_KEYS_FILE. With neither, the embedded default keeps one generated
 * key in the data folder; `generated` is set on the start that created it, so the caller can show it once.
 * Throws ConfigError for a file that is not a non-empty array of key entries.
 */
export function loadApiKeys(config: Config): { keys: KeyEntry[]; generated?: { key: string; path: string } } {
  if (config.BATCHMEM_API_KEYS) return { keys: parseStored(config.BATCHMEM_API_KEYS, 'BATCHMEM_API_KEYS', 1).map(toEntry) };
  if (config.BATCHMEM_API_KEYS_FILE) {
    return { keys: parseStored(readFileSync(config.BATCHMEM_API_KEYS_FILE, 'utf8'), 'BATCHMEM_API_KEYS_FILE', 1).map(toEntry) };
  }
  const path = join(config.BATCHMEM_DATA_DIR, 'api-keys.json');
  if (existsSync(path)) return { keys: parseStored(readFileSync(path, 'utf8'), path, 1).map(toEntry) };
  const key = newKey();
  const keys = [{ key, organization: 'default', namespace: 'default', user: 'admin', workspace: 'default' }];
  writeKeysFile(path, keys);
  return { keys: keys.map(toEntry), generated: { key, path } };
}

function newKey(): string {
  return 'bm_' + randomBytes(24).toString('base64url');
}

/** Replaces the file in one rename, readable by its owner only: a reader never sees half a file. */
function writeKeysFile(path: string, keys: StoredKey[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(keys, null, 2) + '\n', { mode: 0o600 });
  renameSync(temporary, path);
}

function readKeysFile(path: string): StoredKey[] {
  return existsSync(path) ? parseStored(readFileSync(path, 'utf8'), path, 0) : [];
}

export interface KeyTenantInput {
  organization: string;
  user: string;
  namespace?: string | undefined;
  workspace?: string | undefined;
}

/**
 * Adds a new key for the tenant to the file (created if missing) and returns it: the only time the key exists
 * outside the client that receives it. The file keeps its SHA-256 only. Throws ConfigError on a bad tenant field.
 */
export function createKey(path: string, tenant: KeyTenantInput, now = new Date()): { key: string; entry: HashedKey } {
  const existing = readKeysFile(path);
  const key = newKey();
  const parsed = hashedKeySchema.safeParse({
    id: `key_${randomBytes(6).toString('hex')}`,
    sha256: digest(key),
    organization: tenant.organization,
    user: tenant.user,
    namespace: tenant.namespace,
    workspace: tenant.workspace,
    created_at: now.toISOString(),
  });
  if (!parsed.success) {
    throw new ConfigError(`invalid key: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  writeKeysFile(path, [...existing, parsed.data]);
  return { key, entry: parsed.data };
}

export interface ListedKey extends Tenant {
  id: string;
  createdAt: string | null;
  /** True for an entry that holds the key itself (an older or hand-written file): replace it with `keys create`. */
  plaintext: boolean;
}

/** The file's keys without any secret: ids, tenants, creation times. */
export function listKeys(path: string): ListedKey[] {
  return readKeysFile(path).map((stored) => ({
    id: idOf(stored),
    ...tenantOf(stored),
    createdAt: 'key' in stored ? null : (stored.created_at ?? null),
    plaintext: 'key' in stored,
  }));
}

/** Removes the key with this id; false when the file has none. A running server drops it on its next start. */
export function revokeKey(path: string, id: string): boolean {
  const existing = readKeysFile(path);
  const kept = existing.filter((stored) => idOf(stored) !== id);
  if (kept.length === existing.length) return false;
  writeKeysFile(path, kept);
  return true;
}
