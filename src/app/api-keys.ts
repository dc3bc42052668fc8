// API keys and the tenant each one stands for. Lookups go by the key's SHA-256, so no key is compared byte by byte.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Tenant } from '../domain/batch.ts';
import { type ApiKey, apiKeySchema, type Config, ConfigError } from './config.ts';

export interface ApiKeyring {
  tenantFor(key: string): Tenant | undefined;
  size: number;
}

function digest(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function keyring(keys: ApiKey[]): ApiKeyring {
  const byDigest = new Map(
    keys.map((k) => [digest(k.key), { organization: k.organization, namespace: k.namespace, user: k.user, workspace: k.workspace }]),
  );
  return { tenantFor: (key) => byDigest.get(digest(key)), size: byDigest.size };
}

function parseKeys(text: string, source: string): ApiKey[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`${source} is not valid JSON`);
  }
  const parsed = z.array(apiKeySchema).min(1).safeParse(json);
  // The message names fields, never values: the values are secrets.
  if (!parsed.success) {
    throw new ConfigError(`${source} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/**
 * Keys from BATCHMEM_API_KEYS or BATCHMEM_API_KEYS_FILE. With neither, the embedded default keeps one generated
 * key in the data folder; `generated` is set on the start that created it, so the caller can show it once.
 */
export function loadApiKeys(config: Config): { keys: ApiKey[]; generated?: { key: string; path: string } } {
  if (config.BATCHMEM_API_KEYS) return { keys: parseKeys(config.BATCHMEM_API_KEYS, 'BATCHMEM_API_KEYS') };
  if (config.BATCHMEM_API_KEYS_FILE) {
    return { keys: parseKeys(readFileSync(config.BATCHMEM_API_KEYS_FILE, 'utf8'), 'BATCHMEM_API_KEYS_FILE') };
  }
  const path = join(config.BATCHMEM_DATA_DIR, 'api-keys.json');
  if (existsSync(path)) return { keys: parseKeys(readFileSync(path, 'utf8'), path) };
  const key = 'bm_' + randomBytes(24).toString('base64url');
  const keys = [{ key, organization: 'default', namespace: 'default', user: 'admin', workspace: 'default' }];
  mkdirSync(config.BATCHMEM_DATA_DIR, { recursive: true });
  writeFileSync(path, JSON.stringify(keys, null, 2) + '\n', { mode: 0o600 });
  return { keys, generated: { key, path } };
}
