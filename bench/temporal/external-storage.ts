// Temporal's own claim check: External Storage with the S3 driver (@temporalio/external-storage-s3), as a Temporal
// user would configure it on the client and the worker. Payloads over the threshold (256 KiB by default) go to S3
// and the history keeps a reference.
import { S3Client } from '@aws-sdk/client-s3';
import { ExternalStorage } from '@temporalio/common';
import { S3StorageDriver } from '@temporalio/external-storage-s3';
import { AwsSdkS3StorageDriverClient } from '@temporalio/external-storage-s3-aws-sdk';

export interface ExternalStorageTarget {
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export function s3ExternalStorage(target: ExternalStorageTarget): ExternalStorage {
  const s3 = new S3Client({
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
  });
  return new ExternalStorage({ drivers: [new S3StorageDriver({ client: new AwsSdkS3StorageDriverClient(s3), bucket: target.bucket })] });
}

export function externalStorageFromEnv(env: NodeJS.ProcessEnv): ExternalStorage | undefined {
  if (!env.BENCH_EXTERNAL_STORAGE_BUCKET) return undefined;
  return s3ExternalStorage({
    endpoint: env.BENCH_S3_ENDPOINT!,
    region: env.BENCH_S3_REGION ?? 'us-east-1',
    bucket: env.BENCH_EXTERNAL_STORAGE_BUCKET,
    accessKeyId: env.AWS_ACCESS_KEY_ID!,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
  });
}
