import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKey, digest, keyring, listKeys, loadApiKeys, revokeKey } from '../../src/app/api-keys.ts';
import { ConfigError, loadConfig } from '../../src/app/config.ts';
import { runKeysCommand } from '../../src/app/keys-command.ts';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'batchmem-keys-'));
  file = join(dir, 'keys.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const tenant = { organization: 'acme', user: 'ops', namespace: 'prod', workspace: 'main' };
const serverKeys = (path: string) => keyring(loadApiKeys(loadConfig({ BATCHMEM_API_KEYS_FILE: path })).keys);

function capture() {
  let text = '';
  const stream = new Writable({ write(chunk, _encoding, done) { text += String(chunk); done(); } });
  return { stream, text: () => text };
}

describe('batchmem keys', () => {
  it('creates a key the server accepts while the file holds only its SHA-256', () => {
    const { key, entry } = createKey(file, tenant, new Date('2026-01-02T03:04:05Z'));
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(key);
    expect(JSON.parse(text)).toEqual([{ id: entry.id, sha256: digest(key), ...tenant, created_at: '2026-01-02T03:04:05.000Z' }]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(serverKeys(file).tenantFor(key)).toEqual(tenant);
    expect(serverKeys(file).tenantFor(key + 'x')).toBeUndefined();
  });

  it('lists ids and tenants without any secret, and revokes by id', () => {
    const first = createKey(file, tenant);
    const second = createKey(file, { organization: 'globex', user: 'svc' });
    const listed = listKeys(file);
    expect(listed.map((k) => [k.id, k.organization, k.namespace, k.plaintext])).toEqual([
      [first.entry.id, 'acme', 'prod', false],
      [second.entry.id, 'globex', 'default', false],
    ]);
    expect(JSON.stringify(listed)).not.toContain(first.key);
    expect(revokeKey(file, first.entry.id)).toBe(true);
    expect(revokeKey(file, first.entry.id)).toBe(false);
    const keys = serverKeys(file);
    expect(keys.tenantFor(first.key)).toBeUndefined();
    expect(keys.tenantFor(second.key)?.organization).toBe('globex');
  });

  it('keeps loading plaintext entries beside hashed ones, and can revoke a plaintext one by its derived id', () => {
    const plain = { key: 'plain-key-0123456789abcdef', organization: 'old', user: 'u' };
    writeFileSync(file, JSON.stringify([plain]));
    const created = createKey(file, tenant);
    const keys = serverKeys(file);
    expect(keys.size).toBe(2);
    expect(keys.tenantFor(plain.key)).toEqual({ organization: 'old', namespace: 'default', user: 'u', workspace: 'default' });
    expect(keys.tenantFor(created.key)).toEqual(tenant);
    const legacy = listKeys(file).find((k) => k.plaintext)!;
    expect(legacy.id).toBe(`key_${digest(plain.key).slice(0, 12)}`);
    expect(revokeKey(file, legacy.id)).toBe(true);
    expect(serverKeys(file).tenantFor(plain.key)).toBeUndefined();
  });

  it('still generates a plaintext key on the embedded default first start (the README reads [0].key)', () => {
    const first = loadApiKeys(loadConfig({ BATCHMEM_DATA_DIR: dir }));
    const stored = JSON.parse(readFileSync(join(dir, 'api-keys.json'), 'utf8'));
    expect(stored[0].key).toBe(first.generated!.key);
    const again = loadApiKeys(loadConfig({ BATCHMEM_DATA_DIR: dir }));
    expect(again.generated).toBeUndefined();
    expect(keyring(again.keys).tenantFor(first.generated!.key)?.organization).toBe('default');
  });

  it('rejects a malformed entry naming the field, never its value', () => {
    writeFileSync(file, JSON.stringify([{ id: 'key_00112233', sha256: 'secret-looking-value', organization: 'a', user: 'u' }]));
    expect(() => serverKeys(file)).toThrow(ConfigError);
    try {
      serverKeys(file);
    } catch (error) {
      expect((error as Error).message).toContain('sha256');
      expect((error as Error).message).not.toContain('secret-looking-value');
    }
  });

  it('refuses to start on a keys file that holds no key (empty or []), saying how to add one', () => {
    for (const text of ['', '[]\n']) {
      writeFileSync(file, text);
      expect(() => serverKeys(file)).toThrow('BATCHMEM_API_KEYS_FILE holds no API key; add one with `batchmem keys create`');
    }
  });

  it('runs as a command: create prints the key once, list shows no key, revoke of an unknown id exits 1', () => {
    const out = capture();
    const err = capture();
    expect(runKeysCommand(['create', '--organization', 'acme', '--user', 'ops', '--file', file, '--json'], {}, out.stream, err.stream)).toBe(0);
    const { id, key } = JSON.parse(out.text()) as { id: string; key: string };
    expect(serverKeys(file).tenantFor(key)?.organization).toBe('acme');
    const listed = capture();
    expect(runKeysCommand(['list'], { BATCHMEM_API_KEYS_FILE: file }, listed.stream, err.stream)).toBe(0);
    expect(listed.text()).toContain(id);
    expect(listed.text()).not.toContain(key);
    expect(runKeysCommand(['revoke', 'key_ffffffff', '--file', file], {}, out.stream, err.stream)).toBe(1);
    expect(runKeysCommand(['create', '--file', file], {}, out.stream, err.stream)).toBe(2);
    expect(err.text()).toContain('--organization and --user');
    expect(runKeysCommand(['revoke', id, '--file', file], {}, out.stream, err.stream)).toBe(0);
    expect(listKeys(file)).toEqual([]);
  });
});
