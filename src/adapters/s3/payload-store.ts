// PayloadStore on any S3-compatible object store (AWS S3, R2, Ceph, versitygw, ...).
//
// Each object carries its SHA-256 twice: as the store's own full-object checksum (`ChecksumSHA256`, which the store
// verifies on upload and returns on GetObject with ChecksumMode ENABLED) and as user metadata `x-amz-meta-sha256`,
// which this adapter verifies itself on every read. The metadata copy is what catches bytes changed at rest: a
// rewrite that keeps the old metadata gets a fresh store checksum, so only our own comparison notices it.
//
// What versitygw 1.7 (the test store) does, measured: it honours `If-None-Match: *` (412 PreconditionFailed on an
// existing key), verifies `ChecksumSHA256` on PutObject (400 BadDigest on a mismatch) and returns it on GetObject as
// a FULL_OBJECT checksum. Stores that reject conditional writes with 501 NotImplemented are handled by a HEAD-first
// fallback (racy between two writers of the same key, which the app never has: a segment has one writer).
//
// DeleteObjects carries `Content-MD5`: the SDK's default integrity protection sends a CRC32 checksum instead, and
// several S3-compatible stores refuse a multi-object delete without the MD5 (400 InvalidRequest). A store that refuses
// the batch delete anyway (some do not implement it: 501) gets one DeleteObject per key; keys that could not be
// removed either way are named in the error, for the caller to log and sweep later.
//
// Segments are single PutObjects: they are bounded by BATCHMEM_SEGMENT_MAX_BYTES (at most 64 MiB raw), far below
// the 5 GiB single-request limit, and a single request keeps If-None-Match and the full-object checksum simple.
import { createHash } from 'node:crypto';
import {
  ChecksumAlgorithm,
  ChecksumMode,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type BucketLocationConstraint,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import {
  PayloadChecksumError,
  PayloadConflictError,
  type PayloadFolder,
  type PayloadObjectInfo,
  type PayloadStore,
} from '../../ports/payload-store.ts';
import { OutageRetryStrategy } from './retry-strategy.ts';

export interface S3PayloadStoreOptions {
  bucket: string;
  region: string;
  /** For stores other than AWS, e.g. `http://localhost:7070`. */
  endpoint?: string | undefined;
  /** `https://host/bucket/key` instead of `https://bucket.host/key`; most self-hosted stores need it. */
  forcePathStyle?: boolean | undefined;
  /** Omit to use the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** How long one request keeps retrying while the store is unreachable or overloaded. Default 60 s. */
  outageToleranceMs?: number | undefined;
  /** A readiness check gives up after this long instead of waiting out an outage. Default 5 s. */
  checkTimeoutMs?: number | undefined;
}

const metadataSha256 = 'sha256';
// DeleteObjects takes at most 1000 keys, which is also ListObjectsV2's page size.
const deletePageSize = 1000;

interface S3Failure {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function status(error: unknown): number | undefined {
  return (error as S3Failure | undefined)?.$metadata?.httpStatusCode;
}

function code(error: unknown): string | undefined {
  const failure = error as S3Failure | undefined;
  return failure?.Code ?? (failure?.name === 'Error' ? undefined : failure?.name);
}

/** A refusal of the request itself (not of access, not an outage): worth trying the same deletes one key at a time. */
const refusesBatchDelete = (error: unknown) => {
  const answered = status(error);
  return answered === 501 || (answered !== undefined && answered >= 400 && answered < 500 && answered !== 403 && answered !== 404);
};

const isNotFound = (error: unknown) => status(error) === 404 || code(error) === 'NoSuchKey' || code(error) === 'NotFound';

export class S3PayloadStore implements PayloadStore {
  readonly #client: S3Client;
  readonly #checkClient: S3Client;
  readonly #bucket: string;
  readonly #region: string;
  readonly #where: string;
  readonly #checkTimeoutMs: number;
  /** Turned off the first time the store answers If-None-Match with 501 NotImplemented. */
  #conditionalWrites = true;

  constructor(options: S3PayloadStoreOptions) {
    this.#bucket = options.bucket;
    this.#region = options.region;
    this.#where = `s3://${options.bucket}${options.endpoint ? ` at ${options.endpoint}` : ` in ${options.region}`}`;
    this.#checkTimeoutMs = options.checkTimeoutMs ?? 5_000;
    const config: S3ClientConfig = {
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      // A hung connection must fail (and be retried) rather than stall a segment forever.
      requestHandler: { connectionTimeout: 3_000, requestTimeout: 30_000 },
    };
    this.#client = new S3Client({
      ...config,
      retryStrategy: new OutageRetryStrategy({ outageToleranceMs: options.outageToleranceMs ?? 60_000 }),
    });
    // Readiness answers now, with the real reason, instead of waiting out an outage.
    this.#checkClient = new S3Client({ ...config, maxAttempts: 1 });
    this.#client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === 'DeleteObjectsCommand' && request.headers && typeof request.body === 'string') {
          request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
        }
        return next(args);
      },
      // After the body is serialised, before the request is signed.
      { step: 'build', name: 'batchmemDeleteObjectsContentMd5' },
    );
  }

  async put(key: string, body: Uint8Array, info: PayloadObjectInfo): Promise<void> {
    const command = (conditional: boolean) =>
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: info.contentType,
        ContentEncoding: info.contentEncoding,
        ChecksumAlgorithm: ChecksumAlgorithm.SHA256,
        ChecksumSHA256: Buffer.from(info.sha256Hex, 'hex').toString('base64'),
        Metadata: { [metadataSha256]: info.sha256Hex },
        ...(conditional ? { IfNoneMatch: '*' } : {}),
      });
    // A few rounds only for the rare interleavings: the key vanishing between a 412 and our read, or the switch to
    // look-before-write.
    for (let round = 1; ; round += 1) {
      const conditional = this.#conditionalWrites;
      if (!conditional && (await this.#holds(key, body))) return;
      try {
        await this.#client.send(command(conditional));
        return;
      } catch (error) {
        if (conditional && (status(error) === 501 || code(error) === 'NotImplemented')) {
          this.#conditionalWrites = false;
          continue;
        }
        // 412: the key exists. A retried write (ours, or the SDK's after a lost response) is fine if the bytes match.
        // 409 ConditionalRequestConflict: a concurrent write of the same key; the comparison settles it the same way.
        if (status(error) !== 412 && status(error) !== 409) throw error;
        if (await this.#holds(key, body)) return;
        if (round >= 3) throw error;
      }
    }
  }

  /** `false` when the key is free, `true` when it holds these bytes; throws PayloadConflictError when it holds others. */
  async #holds(key: string, body: Uint8Array): Promise<boolean> {
    let existing: Uint8Array | undefined;
    try {
      existing = await this.get(key);
    } catch (error) {
      // A corrupt object under our key is not ours to overwrite, and certainly not the same bytes.
      if (error instanceof PayloadChecksumError) throw new PayloadConflictError(`${this.#where}/${key}: ${error.message}`);
      throw error;
    }
    if (existing === undefined) return false;
    if (Buffer.from(existing.buffer, existing.byteOffset, existing.byteLength).equals(body)) return true;
    throw new PayloadConflictError(`${this.#where}/${key} already holds different bytes`);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    // A mismatch is read once more before it is reported: bytes damaged in transit read right the second time,
    // bytes damaged at rest do not.
    try {
      return await this.#read(key);
    } catch (error) {
      if (!(error instanceof PayloadChecksumError)) throw error;
      return this.#read(key);
    }
  }

  async #read(key: string): Promise<Uint8Array | undefined> {
    let bytes: Uint8Array;
    let expectedHex: string | undefined;
    let storeChecksum: string | undefined;
    try {
      const response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: key, ChecksumMode: ChecksumMode.ENABLED }),
      );
      expectedHex = response.Metadata?.[metadataSha256]?.toLowerCase();
      storeChecksum = response.ChecksumType === 'COMPOSITE' ? undefined : response.ChecksumSHA256;
      // The SDK checks the store's checksum as the body streams in and fails the read on a mismatch.
      bytes = await response.Body!.transformToByteArray();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (/checksum mismatch/i.test((error as Error).message)) {
        throw new PayloadChecksumError(`SHA-256 checksum mismatch reported by the store: ${(error as Error).message}`);
      }
      throw error;
    }
    const actual = createHash('sha256').update(bytes).digest();
    const actualHex = actual.toString('hex');
    if (expectedHex !== undefined && expectedHex !== actualHex) {
      throw new PayloadChecksumError(`SHA-256 checksum mismatch: stored ${expectedHex}, read ${actualHex}`);
    }
    if (storeChecksum !== undefined && storeChecksum !== actual.toString('base64')) {
      const storedHex = Buffer.from(storeChecksum, 'base64').toString('hex');
      throw new PayloadChecksumError(`SHA-256 checksum mismatch: the store's checksum is ${storedHex}, read ${actualHex}`);
    }
    return bytes;
  }

  async deletePrefix(prefix: string): Promise<number> {
    // A prefix names a folder: `org/abc` must not take `org/abcd` with it.
    const folder = prefix.endsWith('/') ? prefix : `${prefix}/`;
    let removed = 0;
    let continuationToken: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: folder,
          MaxKeys: deletePageSize,
          ...(continuationToken ? { ContinuationToken: continuationToken } : {}),
        }),
      );
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [object.Key] : []));
      if (keys.length > 0) {
        const left = await this.#deleteKeys(keys);
        if (left.length > 0) {
          const named = left.slice(0, 5).map(({ key, reason }) => `${key}: ${reason}`).join('; ');
          throw new Error(
            `could not delete ${left.length} of ${keys.length} objects under ${this.#where}/${folder} ` +
              `(${named}${left.length > 5 ? '; ...' : ''})`,
          );
        }
        removed += keys.length;
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    return removed;
  }

  /**
   * One listing of the whole bucket, a page (1000 keys) at a time. Keys come in lexicographic order, so the keys of a
   * folder (segments directly under their upload's folder) are adjacent: only the folder being read is held, and it is
   * yielded as soon as a key of another folder shows up. `lastWrittenAt` is the newest `LastModified` among its keys
   * (when the store took the object in, by its own clock). Continuation tokens name a position by key, so deleting a folder
   * already yielded does not disturb the listing.
   */
  async *folders(): AsyncGenerator<PayloadFolder> {
    let current: PayloadFolder | undefined;
    let continuationToken: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          MaxKeys: deletePageSize,
          ...(continuationToken ? { ContinuationToken: continuationToken } : {}),
        }),
      );
      for (const object of page.Contents ?? []) {
        const slash = object.Key?.lastIndexOf('/') ?? -1;
        if (slash <= 0) continue; // a key without a folder has no prefix to delete
        const prefix = object.Key!.slice(0, slash);
        const written = object.LastModified ?? new Date(0);
        if (current?.prefix === prefix) {
          if (written > current.lastWrittenAt) current.lastWrittenAt = written;
          continue;
        }
        if (current) yield current;
        current = { prefix, lastWrittenAt: written };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    if (current) yield current;
  }

  /** Deletes `keys` (at most one page); returns the ones still there, with why. */
  async #deleteKeys(keys: string[]): Promise<Array<{ key: string; reason: string }>> {
    try {
      const result = await this.#client.send(
        new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
      );
      return (result.Errors ?? []).map((failure) => ({ key: failure.Key ?? '?', reason: `${failure.Code ?? ''} ${failure.Message ?? ''}`.trim() }));
    } catch (error) {
      if (!refusesBatchDelete(error)) throw error;
    }
    // The store refused the multi-object delete: one request per key, a few at a time.
    const left: Array<{ key: string; reason: string }> = [];
    const queue = [...keys];
    const worker = async () => {
      for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
        try {
          await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
        } catch (error) {
          if (!isNotFound(error)) left.push({ key, reason: this.#describe(error) });
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return left;
  }

  async check(): Promise<void> {
    const signal = AbortSignal.timeout(this.#checkTimeoutMs);
    if ((await this.#bucketState(signal)) === 'missing') {
      throw new Error(`${this.#where} does not exist; run \`batchmem migrate\` to create it`);
    }
  }

  async prepare(): Promise<string> {
    return `bucket ${this.#bucket}: ${await this.ensureBucket()}`;
  }

  /** Creates the bucket unless it exists. Safe to run any number of times. */
  async ensureBucket(): Promise<'created' | 'exists'> {
    if ((await this.#bucketState()) === 'exists') return 'exists';
    try {
      await this.#client.send(
        new CreateBucketCommand({
          Bucket: this.#bucket,
          // us-east-1 is the default location and AWS rejects it when named explicitly.
          ...(this.#region === 'us-east-1'
            ? {}
            : { CreateBucketConfiguration: { LocationConstraint: this.#region as BucketLocationConstraint } }),
        }),
      );
      return 'created';
    } catch (error) {
      // Another process created it between our look and our create.
      if (code(error) === 'BucketAlreadyOwnedByYou') return 'exists';
      throw new Error(`could not create ${this.#where}: ${this.#describe(error)}`, { cause: error });
    }
  }

  /** Whether the bucket is there; anything else (credentials, network, region) throws a message saying what. */
  async #bucketState(signal?: AbortSignal): Promise<'exists' | 'missing'> {
    const options = signal ? { abortSignal: signal } : {};
    const client = signal ? this.#checkClient : this.#client;
    try {
      await client.send(new HeadBucketCommand({ Bucket: this.#bucket }), options);
      return 'exists';
    } catch (headError) {
      // A HEAD answer has no body, so 404 cannot tell a missing bucket from, say, versitygw's unknown access key
      // (which it answers 404 XAdminUserNotFound). A one-key listing carries the error code that can.
      if (status(headError) === undefined) throw new Error(`${this.#where} is not reachable: ${this.#describe(headError)}`, { cause: headError });
      try {
        await client.send(new ListObjectsV2Command({ Bucket: this.#bucket, MaxKeys: 1 }), options);
        return 'exists';
      } catch (listError) {
        if (code(listError) === 'NoSuchBucket') return 'missing';
        throw new Error(this.#explain(listError), { cause: listError });
      }
    }
  }

  #explain(error: unknown): string {
    const failure = code(error);
    if (status(error) === 403 || failure === 'InvalidAccessKeyId' || failure === 'SignatureDoesNotMatch' || failure === 'XAdminUserNotFound') {
      return `${this.#where} refuses access (${this.#describe(error)}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy`;
    }
    if (status(error) === 301 || failure === 'PermanentRedirect' || failure === 'AuthorizationHeaderMalformed') {
      return `${this.#where} is not in BATCHMEM_S3_REGION=${this.#region} (${this.#describe(error)})`;
    }
    if (status(error) === undefined) return `${this.#where} is not reachable: ${this.#describe(error)}`;
    return `${this.#where} answered ${status(error)}: ${this.#describe(error)}`;
  }

  #describe(error: unknown): string {
    const name = (error as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') return `no answer within ${this.#checkTimeoutMs} ms`;
    const failure = code(error);
    const message = (error as Error).message;
    return failure && failure !== message && failure !== 'UnknownError' ? `${failure}: ${message}` : message;
  }

  async close(): Promise<void> {
    this.#client.destroy();
    this.#checkClient.destroy();
  }
}
