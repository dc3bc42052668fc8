// The HTTP app over the in-memory fakes and the in-process runner, for unit tests that go through every layer but
// start no process: one tenant's key, quiet logs, no dedupe window.
import { Writable } from 'node:stream';
import { keyring } from '../../src/app/api-keys.ts';
import { createHttpApp } from '../../src/app/http/app.ts';
import { LocalOrchestrator } from '../../src/app/local-runner.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createMetrics } from '../../src/app/metrics.ts';
import { defaultSettings, type OrchestratedServices, type Services } from '../../src/app/services.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, ScriptedNotifier } from './fakes.ts';

export const inProcessKeys = [{ key: 'key-a-0123456789abcdef0123456789abcdef', organization: 'org-a', namespace: 'ns', user: 'user-a', workspace: 'ws' }];
/** The headers that authenticate as `inProcessKeys[0]`. */
export const inProcessAuth = { authorization: `Bearer ${inProcessKeys[0]!.key}` };

/** `maxJsonBodyBytes` is the JSON body limit in bytes. Close the returned orchestrator when done. */
export function inProcessApp(maxJsonBodyBytes: number) {
  const sink = new MemorySinkFake();
  const base: Services = {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink,
    webhooks: new ScriptedNotifier(),
    clock: systemClock,
    settings: { ...defaultSettings, dedupeWindowMs: 0, watchIntervalMs: 20 },
  };
  const orchestrator = new LocalOrchestrator(base, { workerId: 'unit', batchConcurrency: 2 });
  const services: OrchestratedServices = { ...base, orchestrator };
  const quiet = new Writable({ write(_chunk, _encoding, done) { done(); } });
  const app = createHttpApp({ services, keys: keyring(inProcessKeys), logger: createLogger('error', quiet), metrics: createMetrics(), maxJsonBodyBytes });
  return { app, sink, orchestrator };
}
