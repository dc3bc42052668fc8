// The PayloadStore contract against S3: versitygw from the container harness, through the SDK as any store would be.
// Then what only this adapter promises: what an object carries, folder-exact deletes past one page, bucket checks.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3PayloadStore, type S3PayloadStoreOptions } from '../../src/adapters/s3/payload-store.ts';
import { PayloadChecksumError } from '../../src/ports/payload-store.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startS3, stopAllBackends, type S3Backend } from '../support/containers.ts';
import { payloadStoreContract } from './payload-store.contract.ts';

let s3: S3Backend | undefined;
let starting: Promise<S3Backend> | undefined;
const backend = () => (starting ??= startS3().then((started) => (s3 = started)));
afterAll(stopAllBackends);
printLogsOnFailure(() => [s3]);

const connection = (started: S3Backend) => ({
  endpoint: started.endpoint,
  region: started.region,
  forcePathStyle: true,
  credentials: { accessKeyId: started.accessKeyId, secretAccessKey: started.secretAccessKey },
});

async function openStore(options: Partial<S3PayloadStoreOptions> = {}) {
  const started = await backend();
  const bucket = `test-${randomUUID()}`;
  const store = new S3PayloadStore({ ...connection(started), bucket, ...options });
  await store.ensureBucket();
  // A plain client, to look at and change stored objects behind the adapter's back.
  const raw = new S3Client(connection(started));
  return { store, raw, bucket, close: async () => { raw.destroy(); await store.close(); } };
}

const info = (body: Uint8Array) => ({
  sha256Hex: createHash('sha256').update(body).digest('hex'),
  contentType: 'application/x-ndjson',
  contentEncoding: 'zstd',
});

/** Flips one byte of a stored object, keeping its metadata, so the SHA-256 the adapter wrote must catch it. */
function corrupter(raw: S3Client, bucket: string) {
  return async (key: string) => {
    const original = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = await original.Body!.transformToByteArray();
    bytes[bytes.length >> 1]! ^= 0xff;
    await raw.send(new PutObjectCommand({
      Bucket: bucket, Key: key, Body: bytes, Metadata: original.Metadata,
      ContentType: original.ContentType, ContentEncoding: original.ContentEncoding,
    }));
  };
}

payloadStoreContract('s3', async () => {
  const { store, raw, bucket, close } = await openStore();
  return { store, corrupt: corrupter(raw, bucket), close };
});

// A store that does not implement conditional writes: versitygw behind a proxy that answers any request carrying
// If-None-Match with 501 NotImplemented, as some S3-compatible stores do. The adapter must fall back and still keep
// every guarantee of the contract.
payloadStoreContract('s3 without If-None-Match', async () => {
  const started = await backend();
  const target = new URL(started.endpoint);
  let refused = 0;
  const proxy = createServer((request, response) => {
    if (request.headers['if-none-match']) {
      refused += 1;
      request.resume();
      response.writeHead(501, { 'content-type': 'application/xml' });
      response.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>' +
        '<Message>A header you provided implies functionality that is not implemented.</Message></Error>');
      return;
    }
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  const opened = await openStore({ endpoint: `http://127.0.0.1:${port}` });
  return {
    store: opened.store,
    corrupt: corrupter(opened.raw, opened.bucket),
    async close() {
      expect(refused).toBe(1); // one refusal switches the adapter to look-before-write for good
      await opened.close();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
});

describe('S3PayloadStore', () => {
  let opened: Awaited<ReturnType<typeof openStore>>;
  beforeAll(async () => {
    opened = await openStore();
  });
  afterAll(async () => opened?.close());

  it('stores a segment with its content type, encoding, and SHA-256 as both store checksum and metadata', async () => {
    const key = `org%20a/${uniqueId()}/segment-000001.zst`;
    const body = randomBytes(2000);
    await opened.store.put(key, body, info(body));
    const head = await opened.raw.send(new HeadObjectCommand({ Bucket: opened.bucket, Key: key, ChecksumMode: 'ENABLED' }));
    expect(head.ContentType).toBe('application/x-ndjson');
    expect(head.ContentEncoding).toBe('zstd');
    expect(head.ChecksumSHA256).toBe(createHash('sha256').update(body).digest('base64'));
    expect(head.Metadata).toEqual({ sha256: info(body).sha256Hex });
  });

  it('refuses a body that does not match the SHA-256 it is sent with, and stores nothing', async () => {
    const key = `org-a/${uniqueId()}/segment-000001.zst`;
    const body = randomBytes(500);
    await expect(opened.store.put(key, body, info(randomBytes(500)))).rejects.toThrow(/SHA256|digest/i);
    expect(await opened.store.get(key)).toBeUndefined();
  });

  it('says which checksum failed and what it read when metadata and bytes disagree', async () => {
    const key = `org-a/${uniqueId()}/segment-000007.zst`;
    const body = randomBytes(500);
    await opened.store.put(key, body, info(body));
    const flipped = Buffer.from(body);
    flipped[10]! ^= 0x01;
    await opened.raw.send(new PutObjectCommand({ Bucket: opened.bucket, Key: key, Body: flipped, Metadata: { sha256: info(body).sha256Hex } }));
    const failure = await opened.store.get(key).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PayloadChecksumError);
    expect((failure as Error).message).toBe(
      `SHA-256 checksum mismatch: stored ${info(body).sha256Hex}, read ${info(flipped).sha256Hex}`,
    );
  });

  it('deletes a folder exactly: a sibling whose name starts the same stays', async () => {
    const folder = `org-a/${uniqueId()}`;
    const body = randomBytes(10);
    await opened.store.put(`${folder}/segment-000001.zst`, body, info(body));
    await opened.store.put(`${folder}x/segment-000001.zst`, body, info(body));
    expect(await opened.store.deletePrefix(folder)).toBe(1);
    expect(await opened.store.get(`${folder}x/segment-000001.zst`)).toBeDefined();
  });

  it('deletes more objects than one listing page holds', async () => {
    const folder = `org-a/${uniqueId()}`;
    const limit = pLimit(32);
    const count = 1234;
    await Promise.all(Array.from({ length: count }, (_, i) => limit(async () => {
      const body = Buffer.from(`segment ${i}`);
      await opened.store.put(`${folder}/segment-${String(i + 1).padStart(6, '0')}.zst`, body, info(body));
    })));
    expect(await opened.store.deletePrefix(folder)).toBe(count);
    expect(await opened.store.deletePrefix(folder)).toBe(0);
  });

  it('creates its bucket once and answers later calls with "exists"', async () => {
    const started = await backend();
    const store = new S3PayloadStore({ ...connection(started), bucket: `test-${randomUUID()}` });
    try {
      await expect(store.check()).rejects.toThrow(/does not exist; run `batchmem migrate`/);
      expect(await store.ensureBucket()).toBe('created');
      expect(await store.ensureBucket()).toBe('exists');
      await expect(store.check()).resolves.toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('reports wrong credentials clearly in its readiness check', async () => {
    const started = await backend();
    const store = new S3PayloadStore({
      ...connection(started), bucket: opened.bucket, credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong-secret' },
    });
    try {
      await expect(store.check()).rejects.toThrow(/refuses access \(.*\): check AWS_ACCESS_KEY_ID/);
    } finally {
      await store.close();
    }
  });

  it('reports an unreachable store within its check timeout', async () => {
    const store = new S3PayloadStore({
      endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, bucket: 'nowhere',
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, checkTimeoutMs: 1000,
    });
    const startedAt = performance.now();
    try {
      await expect(store.check()).rejects.toThrow(/s3:\/\/nowhere at http:\/\/127\.0\.0\.1:9 is not reachable/);
      expect(performance.now() - startedAt).toBeLessThan(3000);
    } finally {
      await store.close();
    }
  });
});
