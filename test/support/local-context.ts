// Builds an embedded-default context (SQLite, files, in-process orchestrator) in a fresh temporary folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import { SqliteBatchRepository } from '../../src/adapters/local/batch-repository.ts';
import { SqliteMemorySink } from '../../src/adapters/local/memory-sink.ts';
import { FilePayloadStore } from '../../src/adapters/local/payload-store.ts';
import { HttpWebhookNotifier } from '../../src/adapters/webhook/notifier.ts';
import { type Services, defaultSettings, type OrchestratedServices, type Settings } from '../../src/app/services.ts';
import { systemClock } from '../../src/ports/clock.ts';

export function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'batchmem-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function localContext(settings: Partial<Settings> = {}) {
  const dir = tempDir();
  const base: Services = {
    batches: new SqliteBatchRepository(join(dir.path, 'batchmem.db')),
    payloads: new FilePayloadStore(join(dir.path, 'payloads')),
    sink: new SqliteMemorySink(join(dir.path, 'memories.db')),
    webhooks: new HttpWebhookNotifier({ timeoutMs: 2000, allowPrivate: true }),
    clock: systemClock,
    settings: { ...defaultSettings, ...settings },
  };
  const orchestrator = new LocalOrchestrator(base, { workerId: 'test-worker', batchConcurrency: 2 });
  const services: OrchestratedServices = { ...base, orchestrator };
  return {
    services,
    orchestrator,
    dir: dir.path,
    async close() {
      await orchestrator.close();
      await base.batches.close();
      await base.sink.close();
      dir.remove();
    },
  };
}
