// `batchmem migrate`: creates what the configured backends need. SQLite and files create themselves on open.
import type { Config } from './config.ts';
import { loadApiKeys } from './api-keys.ts';
import { buildContext, parseConnection } from './wire.ts';

export async function migrate(config: Config): Promise<number> {
  const services = await buildContext(config);
  try {
    const prepared = await services.payloads.prepare();
    if (prepared) process.stdout.write(`${prepared}\n`);
    if ([config.BATCHMEM_STORE, config.BATCHMEM_PAYLOADS, config.BATCHMEM_SINK].includes('parse')) {
      const problems = await migrateParseBackend(config);
      if (problems > 0) return 1;
    }
    await Promise.all([services.batches.check(), services.payloads.check(), services.sink.check()]);
    process.stdout.write(`store=${config.BATCHMEM_STORE} payloads=${config.BATCHMEM_PAYLOADS} sink=${config.BATCHMEM_SINK}: ready\n`);
    return 0;
  } finally {
    await Promise.allSettled([services.batches.close(), services.payloads.close(), services.sink.close()]);
  }
}

/** Parse classes, indexes, unique keys (PARSE_DATABASE_URI) and the configured organizations' roles; problems found. */
async function migrateParseBackend(config: Config): Promise<number> {
  const { migrateParse, postgresUniqueIndexes } = await import('../adapters/parse/migrate.ts');
  const configuredKeys = config.BATCHMEM_API_KEYS || config.BATCHMEM_API_KEYS_FILE ? loadApiKeys(config).keys : [];
  const report = await migrateParse(await parseConnection(config), {
    organizations: [...new Set(configuredKeys.map((key) => key.organization))],
    uniqueIndexes: config.PARSE_DATABASE_URI ? postgresUniqueIndexes(config.PARSE_DATABASE_URI) : undefined,
    log: (line) => process.stdout.write(`parse: ${line}\n`),
  });
  return report.problems.length;
}
