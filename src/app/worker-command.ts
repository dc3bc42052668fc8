// `batchmem worker`: processes segments for the configured orchestrator.
import type { Config } from './config.ts';

export async function runWorkerCommand(config: Config): Promise<number> {
  if (config.BATCHMEM_ORCHESTRATOR === 'local') {
    process.stderr.write('with BATCHMEM_ORCHESTRATOR=local, `batchmem serve` runs the worker in-process; there is no separate worker\n');
    return 2;
  }
  throw new Error('BATCHMEM_ORCHESTRATOR=temporal worker is not wired yet');
}
