// Starts the real backends (PostgreSQL, versitygw S3, Temporal dev server) from the images that
// `npm run test:images` builds. Each start function returns connection settings plus a `Backend` handle.
//
// Host ports are chosen free up front and bound explicitly, so `restart()` keeps them: connection settings stay
// valid across a restart (Docker would otherwise hand out new random ports). Data survives `restart()` because
// the container and its volume survive; `stop()` removes both, unless the data is on a named `dataVolume`.
import { createServer } from 'node:net';
import { afterEach } from 'vitest';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import type { Readable } from 'node:stream';
import { containerLogs, harnessLabel, imageFor, ownerPidLabel, type BackendName } from './docker.ts';

export interface Backend {
  readonly name: BackendName;
  readonly container: StartedTestContainer;
  /** Host the mapped ports are on (usually `localhost`). */
  readonly host: string;
  /** Restarts the container in place, killing it without a graceful shutdown by default; data and ports survive. */
  restart(options?: { gracefulTimeoutSeconds?: number }): Promise<void>;
  /** Stops and removes the container and its anonymous volume. Safe to call twice. */
  stop(): Promise<void>;
  /** Recent stdout and stderr of the container. */
  logs(tailLines?: number): Promise<string>;
  printLogs(tailLines?: number): Promise<void>;
}

export interface PostgresBackend extends Backend {
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** e.g. `postgres://postgres@localhost:49153/parse`, the form Parse Server's `databaseURI` takes. */
  readonly url: string;
}

export interface S3Backend extends Backend {
  readonly port: number;
  /** e.g. `http://localhost:49154`; use with `forcePathStyle: true`. */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface TemporalBackend extends Backend {
  readonly port: number;
  /** gRPC frontend, e.g. `localhost:49155`, for `Connection.connect` / `NativeConnection.connect`. */
  readonly address: string;
  readonly namespace: string;
  readonly uiUrl: string;
}

const started = new Set<Backend>();

export async function startPostgres(): Promise<PostgresBackend> {
  const database = 'parse';
  const user = 'postgres';
  const { backend, ports } = await startBackend('postgres', [5432], (container) =>
    container.withWaitStrategy(Wait.forHealthCheck()),
  );
  const port = ports[0]!;
  return { ...backend, port, database, user, url: `postgres://${user}@${backend.host}:${port}/${database}` };
}

export async function startS3(
  credentials = { accessKeyId: 'batchmem', secretAccessKey: 'batchmem-secret-key' },
): Promise<S3Backend> {
  const { backend, ports } = await startBackend('s3', [7070], (container) =>
    container
      .withEnvironment({ ROOT_ACCESS_KEY: credentials.accessKeyId, ROOT_SECRET_KEY: credentials.secretAccessKey })
      .withWaitStrategy(Wait.forHttp('/health', 7070)),
  );
  const port = ports[0]!;
  return { ...backend, ...credentials, port, region: 'us-east-1', endpoint: `http://${backend.host}:${port}` };
}

export interface TemporalOptions {
  /**
   * A named Docker volume (created if missing) or an absolute host path, mounted at /data where the dev
   * server keeps its SQLite file. Lets a new container pick up the workflows of a stopped one. The volume is
   * not removed by `stop()`; remove it with `removeVolume()` from `./docker.ts`.
   */
  dataVolume?: string;
  /** Extra `temporal server start-dev` arguments, e.g. `['--dynamic-config-value', 'limit.blobSize.error=1048576']`. */
  extraArgs?: string[];
}

export async function startTemporal(options: TemporalOptions = {}): Promise<TemporalBackend> {
  const { backend, ports } = await startBackend('temporal', [7233, 8233], (container) => {
    if (options.dataVolume) container.withBindMounts([{ source: options.dataVolume, target: '/data' }]);
    if (options.extraArgs?.length) container.withCommand([...temporalCommand, ...options.extraArgs]);
    // The image's health check passes once the `default` namespace answers.
    return container.withWaitStrategy(Wait.forHealthCheck());
  });
  const [port, uiPort] = ports as [number, number];
  return {
    ...backend,
    port,
    address: `${backend.host}:${port}`,
    namespace: 'default',
    uiUrl: `http://${backend.host}:${uiPort}`,
  };
}

// Must match the CMD in test/containers/temporal/Dockerfile; only used when extra arguments are added.
const temporalCommand = [
  'temporal', 'server', 'start-dev', '--ip', '0.0.0.0', '--port', '7233', '--ui-port', '8233',
  '--db-filename', '/data/temporal.db', '--namespace', 'default',
];

/** Stops every backend this process started. Use as `afterAll(stopAllBackends)`. */
export async function stopAllBackends(): Promise<void> {
  await Promise.all([...started].map((backend) => backend.stop()));
}

/** Prints the logs of the given backends after each failing test in the calling file. */
export function printLogsOnFailure(backends: () => Array<Backend | undefined>): void {
  afterEach(async ({ task }) => {
    if (task.result?.state !== 'fail') return;
    for (const backend of backends()) await backend?.printLogs();
  });
}

async function startBackend(
  name: BackendName,
  containerPorts: number[],
  configure: (container: GenericContainer) => GenericContainer,
): Promise<{ backend: Backend; ports: number[] }> {
  const image = await imageFor(name);
  // Another process can take a port between our probe and Docker's bind; try fresh ports a few times.
  for (let attempt = 1; ; attempt++) {
    const hostPorts = await Promise.all(containerPorts.map(() => freePort()));
    const startupLogs: string[] = [];
    let logStream: Readable | undefined;
    const container = configure(
      new GenericContainer(image)
        .withExposedPorts(...containerPorts.map((port, i) => ({ container: port, host: hostPorts[i]! })))
        .withLabels({ [harnessLabel]: name, [ownerPidLabel]: String(ownerPid()) })
        .withStartupTimeout(120_000)
        // Testcontainers removes a container that fails to become ready, so its logs are kept from the start.
        .withLogConsumer((stream: Readable) => {
          logStream = stream.on('data', (chunk: string) => startupLogs.push(chunk));
        }),
    );
    try {
      const backend = wrap(name, await container.start());
      logStream?.destroy(); // later logs are fetched on demand by `logs()`
      return { backend, ports: hostPorts };
    } catch (error) {
      const message = (error as Error).message;
      if (attempt < 3 && /port is already allocated|address already in use/i.test(message)) continue;
      console.error(`[harness] ${name} (${image}) failed to start: ${message}\n--- container logs ---\n` +
        `${startupLogs.join('').slice(-20_000) || '(none)'}\n--- end of ${name} logs ---`);
      throw error;
    }
  }
}

function wrap(name: BackendName, container: StartedTestContainer): Backend {
  let stopped = false;
  const backend: Backend = {
    name,
    container,
    host: container.getHost(),
    async restart(options = {}) {
      await container.restart({ timeout: options.gracefulTimeoutSeconds ?? 0 });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      started.delete(backend);
      await container.stop();
    },
    logs: (tailLines) => containerLogs(container.getId(), tailLines),
    async printLogs(tailLines) {
      console.error(`--- ${name} container logs ---\n${await backend.logs(tailLines)}\n--- end of ${name} logs ---`);
    },
  };
  started.add(backend);
  return backend;
}

// The test run's main process (set by the global setup), so its teardown can remove what workers left behind.
function ownerPid(): number {
  return Number(process.env.BATCHMEM_TEST_OWNER_PID) || process.pid;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
