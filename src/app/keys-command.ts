// `batchmem keys create|list|revoke`: API keys for operators, on the keys file the server reads.
import { parseArgs } from 'node:util';
import { createKey, keysFilePath, listKeys, revokeKey } from './api-keys.ts';
import { ConfigError } from './config.ts';

export const keysUsage = `  keys create --organization ORG --user USER [--namespace NS] [--workspace WS] [--file PATH]
                                 add a key; it is printed once, the file keeps its SHA-256 only
  keys list [--file PATH]        ids, tenants and creation times (never a key)
  keys revoke <id> [--file PATH] remove a key; servers stop accepting it on their next start`;

/**
 * Runs a keys subcommand; returns the exit code (0 done, 1 nothing to revoke, 2 usage). The file is --file, else
 * BATCHMEM_API_KEYS_FILE, else `<BATCHMEM_DATA_DIR>/api-keys.json`.
 */
export function runKeysCommand(args: string[], env: NodeJS.ProcessEnv, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      file: { type: 'string' },
      organization: { type: 'string' },
      user: { type: 'string' },
      namespace: { type: 'string' },
      workspace: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const path = values.file ?? keysFilePath({ BATCHMEM_API_KEYS_FILE: env.BATCHMEM_API_KEYS_FILE, BATCHMEM_DATA_DIR: env.BATCHMEM_DATA_DIR ?? './data' });
  switch (action) {
    case 'create': {
      if (!values.organization || !values.user) {
        err.write(`keys create needs --organization and --user\n\n${keysUsage}\n`);
        return 2;
      }
      try {
        const { key, entry } = createKey(path, { ...values, organization: values.organization, user: values.user });
        if (values.json) out.write(JSON.stringify({ id: entry.id, key }) + '\n');
        else out.write(`created ${entry.id} for ${entry.organization}/${entry.user} in ${path}\nkey (shown once, store it now):\n\n  ${key}\n\n`);
        return 0;
      } catch (error) {
        if (error instanceof ConfigError) {
          err.write(`${error.message}\n`);
          return 2;
        }
        throw error;
      }
    }
    case 'list': {
      const keys = listKeys(path);
      if (values.json) {
        out.write(JSON.stringify(keys) + '\n');
        return 0;
      }
      if (keys.length === 0) out.write(`no keys in ${path}\n`);
      for (const k of keys) {
        const note = k.plaintext ? '  (stored in plain text: replace it with keys create, then revoke this one)' : '';
        out.write(`${k.id}  ${k.organization}/${k.namespace}/${k.user}/${k.workspace}  ${k.createdAt ?? '-'}${note}\n`);
      }
      return 0;
    }
    case 'revoke': {
      const id = positionals[0];
      if (!id) {
        err.write(`keys revoke needs a key id (see keys list)\n\n${keysUsage}\n`);
        return 2;
      }
      if (!revokeKey(path, id)) {
        err.write(`no key ${id} in ${path}\n`);
        return 1;
      }
      out.write(`revoked ${id}\n`);
      return 0;
    }
    default:
      err.write(`${keysUsage}\n`);
      return 2;
  }
}
