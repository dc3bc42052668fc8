// `batchmem migrate`: creates what the configured backends need. SQLite and files create themselves on open.
import { S3PayloadStore } from '../adapters/s3/payload-store.ts';
import type { Config } from './config.ts';
import { buildContext } from './wire.ts';

export async function migrate(config: Config): Promise<number> {
  const ctx = await buildContext(config);
  try {
    if (ctx.payloads instanceof S3PayloadStore) {
      process.stdout.write(`bucket ${config.BATCHMEM_S3_BUCKET}: ${await ctx.payloads.ensureBucket()}\n`);
    }
    await Promise.all([ctx.batches.check(), ctx.payloads.check(), ctx.sink.check()]);
    process.stdout.write(`store=${config.BATCHMEM_STORE} payloads=${config.BATCHMEM_PAYLOADS} sink=${config.BATCHMEM_SINK}: ready\n`);
    return 0;
  } finally {
    await Promise.allSettled([ctx.batches.close(), ctx.payloads.close(), ctx.sink.close()]);
  }
}
