// The PayloadStore contract against S3: versitygw from the container harness, through the SDK as any store would be.
// Then what only this adapter promises: what an object carries, folder-exact deletes past one page, bucket checks.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3PayloadStore, type S3PayloadStoreOptions } from '../../src/adapters/s3/payload-store.ts';
import { PayloadChecksumError } from '../../src/ports/payload-store.ts';
import { keyring } from '../../src/app/api-keys.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { LeftoverPayloads } from '../../src/app/processing/payload-leftovers.ts';
import { defaultSettings, type OrchestratedServices, type Services } from '../../src/app/services.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { MemoryBatchRepository, MemorySinkFake, RecordingOrchestrator, ScriptedNotifier } from '../support/fakes.ts';
import { inProcessAuth, inProcessKeys } from '../support/in-process-app.ts';
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

/** An S3 error document, as a store sends it. */
function s3Error(response: ServerResponse, status: number, code: string, message: string) {
  response.writeHead(status, { 'content-type': 'application/xml' });
  response.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`);
}

/**
 * versitygw behind a loopback proxy that reads each request whole and may answer it itself (`refuse` returns true
 * when it did), as a stricter S3-compatible store would.
 */
async function strictStore(refuse: (request: IncomingMessage, body: Buffer, response: ServerResponse) => boolean) {
  const started = await backend();
  const target = new URL(started.endpoint);
  const proxy = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      if (refuse(request, body, response)) return;
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      upstream.on('error', () => response.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  const opened = await openStore({ endpoint: `http://127.0.0.1:${port}` });
  return {
    ...opened,
    async close() {
      await opened.close();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

const isBatchDelete = (request: IncomingMessage) => request.method === 'POST' && /[?&]delete(=|&|$)/.test(request.url ?? '');

// A store that demands Content-MD5 on DeleteObjects (as several do since the SDK's default integrity change sends a
// CRC32 instead): the adapter sends the MD5, and it matches the body.
const md5Checks = { missing: 0, wrong: 0, matched: 0 };
payloadStoreContract('s3 demanding Content-MD5 on DeleteObjects', async () => {
  const opened = await strictStore((request, body, response) => {
    if (!isBatchDelete(request)) return false;
    const sent = request.headers['content-md5'];
    if (!sent) {
      md5Checks.missing += 1;
      s3Error(response, 400, 'InvalidRequest', 'Missing required header for this request: Content-MD5');
      return true;
    }
    if (sent !== createHash('md5').update(body).digest('base64')) {
      md5Checks.wrong += 1;
      s3Error(response, 400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
      return true;
    }
    md5Checks.matched += 1;
    return false;
  });
  return {
    store: opened.store,
    corrupt: corrupter(opened.raw, opened.bucket),
    async close() {
      expect(md5Checks).toMatchObject({ missing: 0, wrong: 0 });
      expect(md5Checks.matched).toBeGreaterThan(0);
      await opened.close();
    },
  };
});

// A store without the multi-object delete (501 NotImplemented): the adapter deletes key by key.
let batchDeletesRefused = 0;
payloadStoreContract('s3 without DeleteObjects', async () => {
  const opened = await strictStore((request, _body, response) => {
    if (!isBatchDelete(request)) return false;
    batchDeletesRefused += 1;
    s3Error(response, 501, 'NotImplemented', 'A header you provided implies functionality that is not implemented.');
    return true;
  });
  return {
    store: opened.store,
    corrupt: corrupter(opened.raw, opened.bucket),
    async close() {
      expect(batchDeletesRefused).toBeGreaterThan(0);
      await opened.close();
    },
  };
});

describe('cleanup never masks the answer (a store refusing every delete for a while)', () => {
  it('a batch with one invalid item answers 400, the segment left behind is logged, and the sweep removes it later', async () => {
    let refusing = true;
    const opened = await strictStore((request, _body, response) => {
      if (!refusing) return false;
      if (isBatchDelete(request)) {
        s3Error(response, 400, 'InvalidRequest', 'Missing required header for this request: Content-MD5');
        return true;
      }
      if (request.method === 'DELETE') {
        s3Error(response, 403, 'AccessDenied', 'Access Denied');
        return true;
      }
      return false;
    });
    const left: Array<{ prefix: string; error: string }> = [];
    const leftovers = new LeftoverPayloads({ left: (prefix, error) => left.push({ prefix, error: (error as Error).message }) });
    const base: Services = {
      batches: new MemoryBatchRepository(),
      payloads: opened.store,
      sink: new MemorySinkFake(),
      webhooks: new ScriptedNotifier(),
      clock: systemClock,
      settings: { ...defaultSettings, segmentMaxItems: 10, dedupeWindowMs: 0 },
      leftovers,
    };
    const services: OrchestratedServices = { ...base, orchestrator: new RecordingOrchestrator() };
    const quiet = new Writable({ write(_chunk, _encoding, done) { done(); } });
    const app = createHttpApp({ services, keys: keyring(inProcessKeys), logger: createLogger('error', quiet), metrics: createMetrics(), maxJsonBodyBytes: 1024 * 1024 });
    const listed = async () =>
      (await opened.raw.send(new ListObjectsV2Command({ Bucket: opened.bucket }))).Contents?.map((object) => object.Key!) ?? [];
    try {
      // Items 0 to 9 fill the first segment, which is written before item 12 is read and refused.
      const memories = Array.from({ length: 15 }, (_, i) => (i === 12 ? { content: '' } : { content: `memory ${i}` }));
      const response = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...inProcessAuth, 'content-type': 'application/json' },
        body: JSON.stringify({ memories }),
      });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { detail: string }).detail).toContain('memory 12 is invalid');
      const segments = await listed();
      expect(segments).toHaveLength(1);
      expect(left).toHaveLength(1);
      expect(left[0]!.prefix).toBe(segments[0]!.split('/').slice(0, 2).join('/'));
      expect(left[0]!.error).toMatch(/could not delete 1 of 1 objects under .*segment-000001\.zst: AccessDenied/);
      expect(leftovers.size).toBe(1);

      // Still refused: the sweep keeps it.
      expect(await leftovers.sweep(opened.store)).toEqual({ removed: 0, remaining: 1 });
      // The store takes deletes again: the next sweep removes the segment.
      refusing = false;
      expect(await leftovers.sweep(opened.store)).toEqual({ removed: 1, remaining: 0 });
      expect(await listed()).toEqual([]);
      expect(services.batches instanceof MemoryBatchRepository && services.batches.batches.size).toBe(0);
    } finally {
      await opened.close();
    }
  });
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
