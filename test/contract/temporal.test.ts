// The Orchestrator contract against Temporal: TemporalOrchestrator on the dev server container, with an
// in-process worker running processBatch over SQLite records and file payloads.
import { afterAll } from 'vitest';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { temporalFixture } from '../support/temporal.ts';
import { orchestratorContract } from './orchestrator.contract.ts';

let temporal: TemporalBackend | undefined;
afterAll(stopAllBackends);
printLogsOnFailure(() => [temporal]);

orchestratorContract('temporal', async () => {
  temporal = await startTemporal();
  const fixture = await temporalFixture(temporal, { settings: { segmentMaxItems: 10, segmentConcurrency: 2 } });
  return { services: fixture.services, describe: fixture.describe, close: fixture.close };
});
