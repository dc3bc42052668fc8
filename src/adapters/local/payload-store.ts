// PayloadStore on the local file system. Each object has a sidecar holding its SHA-256, checked on read.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, link, unlink, writeFile, readdir, stat, opendir } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import {
  PayloadChecksumError,
  PayloadConflictError,
  type PayloadFolder,
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

  /**
   * Walks the tree one directory entry at a time (`opendir`), so a root with any number of uploads is never held in
   * memory. A folder's `lastWrittenAt` is the newest modification time among the folder itself and its files: `put`
   * creates its temporary file in the folder before writing it, which moves the folder's time at the start of a write.
   * Only folders that hold a file are yielded: an organization's folder is shared by its uploads and never swept.
   */
  async *folders(): AsyncGenerator<PayloadFolder> {
    yield* walk(this.#root, '');
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

/** The folders under `path` (named `relative` from the root) that hold a file, deepest first. */
async function* walk(path: string, relative: string): AsyncGenerator<PayloadFolder> {
  let folder;
  try {
    folder = await opendir(path);
  } catch (error) {
    // Gone meanwhile (deleted by a sweep or a refused upload), or the store never wrote anything.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  let newestMs = -Infinity;
  let holdsFiles = false;
  for await (const entry of folder) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) {
      yield* walk(child, relative ? `${relative}/${entry.name}` : entry.name);
    } else if (entry.isFile()) {
      const modified = await stat(child).then((s) => s.mtimeMs, () => undefined);
      if (modified === undefined) continue; // removed between the listing and the look
      holdsFiles = true;
      newestMs = Math.max(newestMs, modified);
    }
  }
  // The root's own files (keys without a folder) have no prefix to delete.
  if (!holdsFiles || !relative) return;
  const own = await stat(path).then((s) => s.mtimeMs, () => undefined);
  if (own === undefined) return;
  yield { prefix: relative, lastWrittenAt: new Date(Math.max(newestMs, own)) };
}
