// PayloadStore on the local file system. Each object has a sidecar holding its SHA-256, checked on read.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, link, unlink, writeFile, readdir, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import {
  PayloadChecksumError,
  PayloadConflictError,
  type PayloadObjectInfo,
  type PayloadStore,
} from '../../ports/payload-store.ts';

const sidecar = '.sha256';

export class FilePayloadStore implements PayloadStore {
  readonly #root: string;

  constructor(root: string) {
    this.#root = resolve(root);
  }

  #path(key: string): string {
    const path = resolve(this.#root, key);
    // Keys are built by the app, but a path must never escape the root.
    if (!path.startsWith(this.#root + sep) || key.endsWith(sidecar)) throw new Error(`invalid payload key ${key}`);
    return path;
  }

  async put(key: string, body: Uint8Array, info: PayloadObjectInfo): Promise<void> {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    // Write aside, then link into place: link fails when the name exists, so nothing is ever clobbered.
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temp, body);
    try {
      await link(temp, path);
      await writeFile(path + sidecar, info.sha256Hex);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const existing = await readFile(path);
      if (!existing.equals(body)) throw new PayloadConflictError(`${key} already holds different bytes`);
    } finally {
      await unlink(temp);
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const path = this.#path(key);
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const expected = (await readFile(path + sidecar, 'utf8').catch(() => '')).trim();
    const actual = createHash('sha256').update(body).digest('hex');
    if (expected && expected !== actual) {
      throw new PayloadChecksumError(`SHA-256 checksum mismatch: stored ${expected}, read ${actual}`);
    }
    return body;
  }

  /** The folder is made on first write; nothing to prepare. */
  async prepare(): Promise<undefined> {
    return undefined;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const path = this.#path(prefix);
    const count = await countFiles(path);
    await rm(path, { recursive: true, force: true });
    return count;
  }

  async check(): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await stat(this.#root);
  }

  async close(): Promise<void> {}
}

async function countFiles(path: string): Promise<number> {
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  return entries.filter((e) => e.isFile() && !e.name.endsWith(sidecar) && !e.name.endsWith('.tmp')).length;
}
