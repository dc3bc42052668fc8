// PayloadStore on Parse Files: one Parse file per compressed segment, and a `BatchPayloadFile` row that maps the
// segment key (unique) to the file with its SHA-256 and size. Reads stream the file and check the SHA-256.
//
// Writing is "upload, then claim the key": the unique key makes the row insert the commit point, so of two writers of
// one key exactly one wins; the loser deletes its upload and compares checksums (identical bytes are fine, different
// bytes are a conflict). A crash between upload and claim leaves an unreferenced file, never a wrong mapping.
// Deleting goes the other way round: the row first, then the file.
//
// The store only sees keys (`<organization>/<upload>/segment-…`), not the submitting user, so the rows' ACL names the
// organization's role (from the key's first part) and no user. Parse files themselves have no ACL: their names carry
// a random token, and Parse Server should be run with `fileDownload.enableForPublic: false` (the adapter reads with
// the master key).
import { createHash } from 'node:crypto';
import { PayloadChecksumError, PayloadConflictError, type PayloadFolder, type PayloadObjectInfo, type PayloadStore } from '../../ports/payload-store.ts';
import { OrganizationRoles, tenantAcl } from './acl.ts';
import { isParseError, type ParseConnection, ParseErrorCode, useMasterKey } from './connection.ts';
import { parseClasses } from './schema.ts';
import { ParseSchemaSetup } from './schema-setup.ts';

const folderPageSize = 500;

type ParseObject = InstanceType<ParseConnection['Parse']['Object']>;

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The organization a key belongs to: its first part, as `submitBatch` URI-encodes it. */
function organizationOf(key: string): string {
  const first = key.split('/')[0] ?? '';
  try {
    return decodeURIComponent(first);
  } catch {
    return first;
  }
}

/** A Parse file name for a key: Parse allows few characters, and prefixes a random token of its own. */
function fileNameFor(key: string): string {
  const base = (key.split('/').at(-1) ?? 'segment').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[^A-Za-z0-9_]+/, '');
  return `${sha256Hex(Buffer.from(key)).slice(0, 16)}-${base || 'segment'}`;
}

export class ParsePayloadStore implements PayloadStore {
  readonly #connection: ParseConnection;
  readonly #Parse: ParseConnection['Parse'];
  readonly #roles: OrganizationRoles;

  readonly #schema: ParseSchemaSetup;

  /** `schema`: the preparation shared with the other Parse adapters of this process (default: its own). */
  constructor(connection: ParseConnection, schema = new ParseSchemaSetup(connection)) {
    this.#schema = schema;
    this.#connection = connection;
    this.#Parse = connection.Parse;
    this.#roles = new OrganizationRoles(connection);
  }

  async put(key: string, body: Uint8Array, info: PayloadObjectInfo): Promise<void> {
    const sha256 = sha256Hex(body);
    const existing = await this.#mapping(key);
    if (existing) return this.#compare(key, existing, sha256);

    const organization = organizationOf(key);
    await this.#roles.ensure(organization);
    const uploaded = await this.#connection.uploadFile(fileNameFor(key), body, info.contentType);
    try {
      // Through REST: the SDK would try to upload a File value that has no URL, and the value goes by name only
      // because a server with `fileUpload.allowedFileUrlDomains: []` refuses File values that carry a URL.
      await this.#connection.request('POST', `/classes/${parseClasses.payloadFile}`, {
        key,
        organization,
        file: { __type: 'File', name: uploaded.name },
        // What the bytes are, not what the caller said they are: the checksum is verified against this on read.
        sha256,
        size: body.byteLength,
        contentType: info.contentType,
        contentEncoding: info.contentEncoding,
        ACL: tenantAcl({ organization }),
      });
    } catch (error) {
      // Any other failure may have stored the row after all (a lost answer), so the upload stays.
      if (!isParseError(error, ParseErrorCode.duplicateValue)) throw error;
      await this.#connection.deleteFile(uploaded.name).catch(() => undefined);
      const winner = await this.#mapping(key);
      if (!winner) throw new Error(`payload ${key} was claimed and is gone again`, { cause: error });
      return this.#compare(key, winner, sha256);
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const mapping = await this.#mapping(key);
    if (!mapping) return undefined;
    const file = mapping.get('file') as { name(): string } | undefined;
    const stream = file ? await this.#connection.downloadFile(file.name()) : undefined;
    if (!stream) throw new PayloadChecksumError(`${key}: its file is missing from Parse (checksum cannot be verified)`);
    const hash = createHash('sha256');
    const chunks: Uint8Array[] = [];
    const reader = stream.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      hash.update(read.value);
      chunks.push(read.value);
    }
    const expected = mapping.get('sha256') as string;
    const actual = hash.digest('hex');
    if (expected !== actual) {
      throw new PayloadChecksumError(`SHA-256 checksum mismatch for ${key}: stored ${expected}, read ${actual}`);
    }
    return Buffer.concat(chunks);
  }

  /** Its class and indexes are prepared with the other Parse classes (`migrateParse`), once. */
  prepare(): Promise<undefined> {
    return this.#schema.prepare();
  }

  async deletePrefix(prefix: string): Promise<number> {
    const folder = prefix.endsWith('/') ? prefix : `${prefix}/`;
    let removed = 0;
    for (;;) {
      const rows = await new this.#Parse.Query(parseClasses.payloadFile).startsWith('key', folder).limit(100).find(useMasterKey);
      if (rows.length === 0) return removed;
      for (const row of rows) {
        try {
          await row.destroy(useMasterKey);
        } catch (error) {
          if (isParseError(error, ParseErrorCode.objectNotFound)) continue; // another deleter got there first
          throw error;
        }
        removed += 1;
        const file = row.get('file') as { name(): string } | undefined;
        if (file) await this.#connection.deleteFile(file.name());
      }
    }
  }

  /**
   * The key rows in key order, a page at a time (keyset paging on the unique key), so a folder's rows are adjacent
   * and only the folder being read is held. `lastWrittenAt` is the newest row's `createdAt`: the claim that ends a
   * `put`. A file uploaded by a `put` that never claimed its key (a crash between) has no row and is not seen.
   */
  async *folders(): AsyncGenerator<PayloadFolder> {
    let current: PayloadFolder | undefined;
    let after: string | undefined;
    for (;;) {
      const query = new this.#Parse.Query(parseClasses.payloadFile).select('key').ascending('key').limit(folderPageSize);
      if (after !== undefined) query.greaterThan('key', after);
      const rows = await query.find(useMasterKey);
      for (const row of rows) {
        const key = row.get('key') as string;
        after = key;
        const slash = key.lastIndexOf('/');
        if (slash <= 0) continue;
        const prefix = key.slice(0, slash);
        const written = row.createdAt ?? new Date(0);
        if (current?.prefix === prefix) {
          if (written > current.lastWrittenAt) current.lastWrittenAt = written;
          continue;
        }
        if (current) yield current;
        current = { prefix, lastWrittenAt: written };
      }
      if (rows.length < folderPageSize) break;
    }
    if (current) yield current;
  }

  async check(): Promise<void> {
    await new this.#Parse.Query(parseClasses.payloadFile).select('key').first(useMasterKey);
  }

  async close(): Promise<void> {}

  /** The stored file's name for a key, for tests that tamper with the bytes behind the store's back. */
  async fileName(key: string): Promise<string | undefined> {
    const mapping = await this.#mapping(key);
    return (mapping?.get('file') as { name(): string } | undefined)?.name();
  }

  #mapping(key: string): Promise<ParseObject | undefined> {
    return new this.#Parse.Query(parseClasses.payloadFile).equalTo('key', key).first(useMasterKey);
  }

  #compare(key: string, existing: ParseObject, sha256: string): void {
    if (existing.get('sha256') !== sha256) throw new PayloadConflictError(`${key} already holds different bytes`);
  }
}
