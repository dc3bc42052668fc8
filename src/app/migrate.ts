// `batchmem migrate`: every configured store prepares what it needs (a bucket, Parse classes and indexes; SQLite and
// files create themselves on open), then each is checked.
import type { Config } from './config.ts';
import { buildContext } from './wire.ts';

export async function migrate(config: Config): Promise<number> {
  const services = await buildContext(config);
  try {
    // Payloads first: the order the lines have always come in (bucket, then Parse schema).
    for (const store of [services.payloads, services.batches, services.sink]) {
      let prepared: string | undefined;
      try {
        prepared = await store.prepare();
      } catch (error) {
        process.stderr.write(`${(error as Error).message}\n`);
        return 1;
      }
      if (prepared) process.stdout.write(`${prepared}\n`);
    }
    await Promise.all([services.batches.check(), services.payloads.check(), services.sink.check()]);
    process.stdout.write(`store=${config.BATCHMEM_STORE} payloads=${config.BATCHMEM_PAYLOADS} sink=${config.BATCHMEM_SINK}: ready\n`);
    return 0;
  } finally {
    await Promise.allSettled([services.batches.close(), services.payloads.close(), services.sink.close()]);
  }
}
