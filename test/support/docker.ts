// The Docker side of the test harness: is an engine there, which locally built image to run, container logs,
// and cleanup of containers a test run left behind (the Testcontainers reaper image cannot be pulled here).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { getContainerRuntimeClient, type ContainerRuntimeClient } from 'testcontainers';

// Set before any container starts: Testcontainers reads it lazily when it would start its reaper.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

const repoRoot = path.resolve(import.meta.dirname, '../..');
export const imageManifestPath = path.join(repoRoot, '.cache/images.json');

/** Labels put on every harness container, so leftovers can be found without touching anyone else's. */
export const harnessLabel = 'batchmem.test-harness';
export const ownerPidLabel = 'batchmem.owner-pid';

const startDockerHint =
  'Start one, e.g. as root: apt-get install -y docker.io && (dockerd >/var/log/dockerd.log 2>&1 &) ' +
  'then wait until `docker info` answers. `bash .ci/run` does all of this.';

/** Resolves to the runtime client, or throws at once with how to start an engine. Never skips. */
export async function requireDocker(timeoutMs = 15_000): Promise<ContainerRuntimeClient> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs}ms`)), timeoutMs);
  });
  try {
    const client = await Promise.race([getContainerRuntimeClient(), timeout]);
    await client.container.dockerode.ping();
    return client;
  } catch (error) {
    throw new Error(`No Docker engine answers (${(error as Error).message}). ${startDockerHint}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

export type BackendName = 'postgres' | 's3' | 'temporal';
/** Images of the deployable stack (Dockerfile, deploy/), built by the same script. */
export type ImageName = BackendName | 'batchmem' | 'parse-server' | 'prometheus';

/** The tag `npm run test:images` built for a backend; throws loudly if it has not been built. */
export async function imageFor(backend: ImageName): Promise<string> {
  const buildHint = 'Run `npm run test:images` first (builds the backend images locally, no registry needed).';
  let manifest: Partial<Record<ImageName, string>>;
  try {
    manifest = JSON.parse(await readFile(imageManifestPath, 'utf8'));
  } catch {
    throw new Error(`No image manifest at ${imageManifestPath}. ${buildHint}`);
  }
  const image = manifest[backend];
  const client = await requireDocker();
  if (!image || !(await imageExists(client, image))) {
    throw new Error(`Image for ${backend} (${image ?? 'not in manifest'}) is missing. ${buildHint}`);
  }
  return image;
}

async function imageExists(client: ContainerRuntimeClient, image: string): Promise<boolean> {
  try {
    await client.container.dockerode.getImage(image).inspect();
    return true;
  } catch {
    return false;
  }
}

/** The last `tailLines` lines of a container's stdout and stderr, interleaved as Docker stored them. */
export async function containerLogs(containerId: string, tailLines = 200): Promise<string> {
  const client = await requireDocker();
  const raw = await client.container.getById(containerId).logs({ stdout: true, stderr: true, tail: tailLines });
  return demuxDockerLogs(raw);
}

// Without a TTY, Docker frames each chunk with an 8-byte header: stream type, 3 zero bytes, big-endian length.
function demuxDockerLogs(raw: Buffer): string {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset + 8 <= raw.length; ) {
    const length = raw.readUInt32BE(offset + 4);
    chunks.push(raw.subarray(offset + 8, offset + 8 + length));
    offset += 8 + length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Removes harness containers whose owning test process is gone (a crashed or killed run), plus, when given,
 * those of `ownerPid` itself. Containers of other live runs on the same engine are left alone.
 */
export async function removeHarnessContainers(ownerPid?: number): Promise<number> {
  const client = await requireDocker();
  const dockerode = client.container.dockerode;
  const containers = await dockerode.listContainers({ all: true, filters: { label: [harnessLabel] } });
  let removed = 0;
  for (const info of containers) {
    const pid = Number(info.Labels[ownerPidLabel]);
    if (pid !== ownerPid && isAlive(pid)) continue;
    await dockerode.getContainer(info.Id).remove({ force: true, v: true }).catch(() => {});
    removed++;
  }
  return removed;
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deletes a named volume made for `dataVolume` options; a no-op if it is already gone. */
export async function removeVolume(name: string): Promise<void> {
  const client = await requireDocker();
  await client.container.dockerode.getVolume(name).remove().catch((error: { statusCode?: number }) => {
    if (error.statusCode !== 404) throw error;
  });
}
