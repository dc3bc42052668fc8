// Global setup of the Docker-backed Vitest projects: fail the whole run at once when no Docker engine answers
// (never skip), and remove containers that this or an earlier, crashed run left behind.
import { removeHarnessContainers, requireDocker } from './docker.ts';

export default async function setup(): Promise<() => Promise<void>> {
  await requireDocker();
  // Workers inherit this, so every container of the run is labelled with the run's main process.
  process.env.BATCHMEM_TEST_OWNER_PID = String(process.pid);
  const stale = await removeHarnessContainers();
  if (stale > 0) console.warn(`[harness] removed ${stale} container(s) left behind by an earlier test run`);
  return async () => {
    const leftovers = await removeHarnessContainers(process.pid);
    if (leftovers > 0) console.warn(`[harness] removed ${leftovers} container(s) a test file did not stop`);
  };
}
