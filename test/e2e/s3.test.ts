// The end-to-end suite with BATCHMEM_PAYLOADS=s3 (versitygw container), once with SQLite records and once with Parse
// records and sink, plus what only an object store adds: the store stopped and started during a batch, a segment
// changed at rest, and retention.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, apiClient, ndjsonStream } from '../support/api-client.ts';
import {
  printLogsOnFailure, startPostgres, startS3, stopAllBackends, type PostgresBackend, type S3Backend,
} from '../support/containers.ts';
import { requireDocker } from '../support/docker.ts';
import { tempDir } from '../support/local-context.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, httpEndToEndSuite, testKeys } from './http.suite.ts';

const root = join(import.meta.dirname, '..', '..');
let s3: S3Backend | undefined;
let starting: Promise<S3Backend> | undefined;
const backend = () => (starting ??= startS3().then((started) => (s3 = started)));
let postgres: PostgresBackend | undefined;
let parse: ParseServerHandle | undefined;
afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [s3, postgres]);

/** The environment a user sets for S3 payloads; credentials by the SDK's standard variables. */
function s3Env(started: S3Backend, bucket: string): Record<string, string> {
  return {
    BATCHMEM_PAYLOADS: 's3',
    BATCHMEM_S3_BUCKET: bucket,
    BATCHMEM_S3_ENDPOINT: started.endpoint,
    BATCHMEM_S3_REGION: started.region,
    BATCHMEM_S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: started.accessKeyId,
    AWS_SECRET_ACCESS_KEY: started.secretAccessKey,
  };
}

/** `batchmem migrate`, run as a user would, creates the bucket. */
async function migrate(env: Record<string, string>): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'src/app/cli.ts'), 'migrate'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
  return stdout;
}

function rawClient(started: S3Backend): S3Client {
  return new S3Client({
    endpoint: started.endpoint,
    region: started.region,
    forcePathStyle: true,
    credentials: { accessKeyId: started.accessKeyId, secretAccessKey: started.secretAccessKey },
  });
}

httpEndToEndSuite(
  'S3 payloads with SQLite records',
  async () => {
    const started = await backend();
    const dir = tempDir();
    const env = { BATCHMEM_DATA_DIR: dir.path, ...s3Env(started, `e2e-${randomUUID()}`) };
    expect(await migrate(env)).toMatch(/: created\n/);
    return { env, close: async () => dir.remove() };
  },
  { json: 10_000, ndjson: 100_000 },
);

httpEndToEndSuite(
  'S3 payloads with Parse records and sink',
  async () => {
    const started = await backend();
    postgres = await startPostgres();
    parse = await startParseServer({ databaseURI: postgres.url });
    const dir = tempDir();
    const env = {
      BATCHMEM_DATA_DIR: dir.path,
      ...s3Env(started, `e2e-parse-${randomUUID()}`),
      BATCHMEM_STORE: 'parse',
      BATCHMEM_SINK: 'parse',
      PARSE_SERVER_URL: parse.serverURL,
      PARSE_APP_ID: parse.appId,
      PARSE_MASTER_KEY: parse.masterKey,
    };
    const migrated = await migrate({ ...env, PARSE_DATABASE_URI: postgres.url });
    expect(migrated).toMatch(/: created\n/);
    expect(migrated).toMatch(/store=parse payloads=s3 sink=parse: ready\n$/);
    return { env, close: async () => dir.remove() };
  },
  { json: 10_000, ndjson: 20_000 },
);

describe('S3 payloads: the store fails under a running batch', () => {
  const keys = testKeys();
  const dir = tempDir();
  const bucket = `faults-${randomUUID()}`;
  let server: ServerProcess;
  let raw: S3Client;
  beforeAll(async () => {
    const started = await backend();
    const env = { ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, ...s3Env(started, bucket) };
    await migrate(env);
    // Small segments, one at a time, so that the faults below land in the middle of a batch.
    server = await serverProcess({ ...env, BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '1' });
    await server.start();
    raw = rawClient(started);
  });
  afterAll(async () => {
    raw?.destroy();
    await server?.stop();
    dir.remove();
  });
  printLogsOnFailure(() => [s3]);

  it('completes with exact counts when the S3 container is stopped for 5 s and started again mid-batch', async () => {
    const api = apiClient(server.url, keys[0]!.key);
    const total = 60_000;
    expect((await api.submitNdjson(ndjsonStream(total), '?batch_id=s3-outage')).status).toBe(202);
    const before = await api.waitFor('s3-outage', (b) => b.request_counts.processed > 0);

    const container = (await requireDocker()).container.dockerode.getContainer(s3!.container.getId());
    await container.stop({ t: 0 });
    const stoppedAt = await api.get('s3-outage');
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const afterOutage = await api.get('s3-outage');
    await container.start();
    const restartedAt = Date.now();

    const done = await api.waitForFinal('s3-outage');
    console.info(
      `[e2e s3] outage at ${stoppedAt.request_counts.processed}/${total} processed ` +
        `(${afterOutage.request_counts.processed} after 5 s down); completed ${Date.now() - restartedAt} ms after the restart`,
    );
    expect(before.request_counts.processed).toBeLessThan(total);
    expect(stoppedAt.request_counts.processed).toBeLessThan(total);
    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    const results = await api.all<{ index: number; memory_id: string }>('/v1/batch/s3-outage/results');
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
  });

  it('fails the batch naming the segment whose byte was flipped, and stores no memory from it', async () => {
    const api = apiClient(server.url, keys[1]!.key);
    const total = 40_000;
    const segmentItems = 200;
    const corruptSegment = 150; // 1-based, as in its key; holds items 29,800 to 29,999
    // Hold the batch back while the byte is flipped: the server is killed as soon as it has accepted the batch,
    // and the restarted server resumes it.
    expect((await api.submitNdjson(ndjsonStream(total), '?batch_id=s3-flipped')).status).toBe(202);
    await server.kill();

    // org-b has no other batch in this bucket, so its only folder is this batch's upload.
    const listed = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'org-b/' }));
    const segmentName = `segment-${String(corruptSegment).padStart(6, '0')}.zst`;
    const key = listed.Contents!.map((object) => object.Key!).find((name) => name.endsWith(`/${segmentName}`))!;
    expect(key).toBeDefined();
    const original = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = await original.Body!.transformToByteArray();
    bytes[bytes.length - 10]! ^= 0x01;
    // A rewrite behind the service's back that keeps the SHA-256 metadata the service wrote.
    await raw.send(new PutObjectCommand({
      Bucket: bucket, Key: key, Body: bytes, Metadata: original.Metadata,
      ContentType: original.ContentType, ContentEncoding: original.ContentEncoding,
    }));

    await server.start();
    const done = await api.waitForFinal('s3-flipped');
    console.info(`[e2e s3] flipped byte: ${done.status} with ${done.request_counts.processed}/${total} processed: ${done.error}`);
    expect(done.status).toBe('failed');
    expect(done.error).toContain(key);
    expect(done.error).toMatch(/checksum mismatch/i);
    const results = await api.all<{ index: number }>('/v1/batch/s3-flipped/results');
    const first = (corruptSegment - 1) * segmentItems;
    expect(results.filter((r) => r.index >= first && r.index < first + segmentItems)).toEqual([]);
    expect(results.length).toBe(done.request_counts.processed);
    expect(done.request_counts.processed).toBeLessThan(total);
  });
});

describe('S3 payloads: retention', () => {
  const keys = testKeys();
  const dir = tempDir();
  const bucket = `retention-${randomUUID()}`;
  let server: ServerProcess;
  let raw: S3Client;
  beforeAll(async () => {
    const started = await backend();
    const env = { ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, ...s3Env(started, bucket) };
    await migrate(env);
    server = await serverProcess({ ...env, BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_PAYLOAD_RETENTION: '3s' });
    await server.start();
    raw = rawClient(started);
  });
  afterAll(async () => {
    raw?.destroy();
    await server?.stop();
    dir.remove();
  });

  const storedSegments = async () =>
    (await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'org-a/' }))).KeyCount ?? 0;

  it('deletes a finished batch’s segments once BATCHMEM_PAYLOAD_RETENTION has passed, keeping its counts and results', async () => {
    const api = apiClient(server.url, keys[0]!.key);
    const total = 2_000;
    expect((await api.submitNdjson(ndjsonStream(total), '?batch_id=kept-briefly')).status).toBe(202);
    expect(await storedSegments()).toBe(total / 200);
    const done = await api.waitForFinal('kept-briefly');
    expect(done.status).toBe('completed');
    const completedAt = Date.now();

    await expect.poll(storedSegments, { timeout: 20_000, interval: 250 }).toBe(0);
    const goneAfterMs = Date.now() - completedAt;
    console.info(`[e2e s3] segments deleted ${goneAfterMs} ms after completion with a 3 s retention`);
    expect(goneAfterMs).toBeGreaterThan(2_000);

    const after = await api.get('kept-briefly');
    expect(after.status).toBe('completed');
    expectCounts(after.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    expect(after.payload.segments).toBe(total / 200);
    expect((await api.all<{ index: number }>('/v1/batch/kept-briefly/results')).length).toBe(total);
    expect(server.output()).toContain('deleted expired payloads');
  });
});
