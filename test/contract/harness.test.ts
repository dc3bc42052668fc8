// Proves the container harness: each backend starts from the locally built image, answers a real client, and
// keeps its data and its host port across `restart()` (which the reliability tests rely on).
import { createHash, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ChecksumAlgorithm, ChecksumMode, CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import {
  printLogsOnFailure, startPostgres, startS3, startTemporal, stopAllBackends,
  type PostgresBackend, type S3Backend, type TemporalBackend,
} from '../support/containers.ts';
import { removeVolume } from '../support/docker.ts';
import type { greet, HarnessActivities } from './fixtures/harness-workflows.ts';

// `pg` arrives with parse-server, without type declarations; this is the little of it the test uses.
interface PgClient {
  connect(): Promise<void>;
  query(sql: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}
const pg = createRequire(import.meta.url)('pg') as { Client: new (config: { connectionString: string }) => PgClient };

afterAll(stopAllBackends);

describe('PostgreSQL container', () => {
  let postgres: PostgresBackend;
  beforeAll(async () => {
    postgres = await startPostgres();
  });
  printLogsOnFailure(() => [postgres]);

  async function query(sql: string, values?: unknown[]) {
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      return (await client.query(sql, values)).rows;
    } finally {
      await client.end();
    }
  }

  test('answers a query on the parse database over the mapped port', async () => {
    expect(await query('select 1 as one, current_database() as db')).toEqual([{ one: 1, db: 'parse' }]);
  });

  test('keeps its rows and its port across a restart', async () => {
    await query('create table harness_probe (note text)');
    await query('insert into harness_probe values ($1)', ['survives']);
    const portBefore = postgres.port;
    await postgres.restart();
    expect(postgres.container.getMappedPort(5432)).toBe(portBefore);
    expect(await query('select note from harness_probe')).toEqual([{ note: 'survives' }]);
  });
});

describe('S3 container (versitygw)', () => {
  let s3: S3Backend;
  let client: S3Client;
  const bucket = 'harness-probe';
  beforeAll(async () => {
    s3 = await startS3();
    client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterAll(() => client?.destroy());
  printLogsOnFailure(() => [s3]);

  test('round-trips an object with a SHA-256 checksum', async () => {
    const body = Buffer.from(`payload ${randomUUID()}\n`.repeat(1000));
    const sha256 = createHash('sha256').update(body).digest('base64');
    const put = await client.send(new PutObjectCommand({
      Bucket: bucket, Key: 'segments/0001', Body: body, ChecksumAlgorithm: ChecksumAlgorithm.SHA256,
    }));
    expect(put.ChecksumSHA256).toBe(sha256);

    const got = await client.send(new GetObjectCommand({
      Bucket: bucket, Key: 'segments/0001', ChecksumMode: ChecksumMode.ENABLED,
    }));
    expect(got.ChecksumSHA256).toBe(sha256);
    expect(Buffer.from(await got.Body!.transformToByteArray())).toEqual(body);
  });

  test('keeps its objects and its port across a restart', async () => {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'restart-probe', Body: 'survives' }));
    await s3.restart();
    expect(s3.container.getMappedPort(7070)).toBe(s3.port);
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'restart-probe' }));
    expect(await got.Body!.transformToString()).toBe('survives');
  });
});

describe('Temporal container (dev server)', () => {
  const dataVolume = `batchmem-harness-temporal-${randomUUID()}`;
  const taskQueue = 'harness';
  const workflowsPath = fileURLToPath(new URL('./fixtures/harness-workflows.ts', import.meta.url));
  const activities: HarnessActivities = { shout: async (text) => text.toUpperCase() };
  let temporal: TemporalBackend;
  beforeAll(async () => {
    // The worker logs every webpack module at INFO; warnings are what a failing run needs.
    Runtime.install({ logger: new DefaultLogger('WARN') });
    temporal = await startTemporal({ dataVolume });
  });
  afterAll(async () => {
    await temporal?.stop();
    await removeVolume(dataVolume);
  });
  printLogsOnFailure(() => [temporal]);

  async function withClient<T>(use: (client: Client) => Promise<T>): Promise<T> {
    const connection = await Connection.connect({ address: temporal.address });
    try {
      return await use(new Client({ connection, namespace: temporal.namespace }));
    } finally {
      await connection.close();
    }
  }

  test('runs a workflow with a real Worker, and keeps its history across a restart and a new container', async () => {
    const workflowId = `harness-${randomUUID()}`;
    const connection = await NativeConnection.connect({ address: temporal.address });
    try {
      const worker = await Worker.create({
        connection, namespace: temporal.namespace, taskQueue, workflowsPath, activities,
      });
      const result = await worker.runUntil(withClient((client) =>
        client.workflow.execute<typeof greet>('greet', { taskQueue, workflowId, args: ['harness'] })));
      expect(result).toBe('HELLO, HARNESS');
    } finally {
      await connection.close();
    }

    const completedResult = () => withClient((client) => client.workflow.getHandle(workflowId).result());
    await temporal.restart();
    expect(temporal.container.getMappedPort(7233)).toBe(temporal.port);
    expect(await completedResult()).toBe('HELLO, HARNESS');

    // A replacement container on the same volume sees the same history.
    await temporal.stop();
    temporal = await startTemporal({ dataVolume });
    expect(await completedResult()).toBe('HELLO, HARNESS');
  });
});
