// The PayloadStore contract against S3: versitygw from the container harness, through the SDK as any store would be.
import { randomUUID } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll } from 'vitest';
import { S3PayloadStore } from '../../src/adapters/s3/payload-store.ts';
import { printLogsOnFailure, startS3, stopAllBackends, type S3Backend } from '../support/containers.ts';
import { payloadStoreContract } from './payload-store.contract.ts';

let s3: S3Backend | undefined;
afterAll(stopAllBackends);
printLogsOnFailure(() => [s3]);

payloadStoreContract('s3', async () => {
  s3 = await startS3();
  const connection = {
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  };
  const bucket = `contract-${randomUUID()}`;
  const store = new S3PayloadStore({ ...connection, bucket });
  await store.ensureBucket();
  // A plain client, to change a stored object behind the adapter's back.
  const raw = new S3Client(connection);
  return {
    store,
    async corrupt(key) {
      const original = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = await original.Body!.transformToByteArray();
      bytes[bytes.length >> 1]! ^= 0xff;
      // Same metadata, so the SHA-256 the adapter wrote is still there to be checked against the new bytes.
      await raw.send(new PutObjectCommand({
        Bucket: bucket, Key: key, Body: bytes, Metadata: original.Metadata,
        ContentType: original.ContentType, ContentEncoding: original.ContentEncoding,
      }));
    },
    async close() {
      raw.destroy();
      await store.close();
    },
  };
});
