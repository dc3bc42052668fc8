// Runs the real batchmem server as a child process (`node src/app/cli.ts serve`), the way a user runs it.
// Output is captured so tests can read the logs (and prove no secret is in them). A test that sets a BATCHMEM_FAULT_*
// variable gets the same command through test/support/faults/cli.ts, which wraps the sink in a fault injector.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(import.meta.dirname, '..', '..');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ServerProcess {
  url: string;
  port: number;
  /** Everything the process wrote to stdout and stderr, across restarts. */
  output(): string;
  /** The running process's id (for /proc readings), or undefined when it is not running. */
  pid(): number | undefined;
  start(): Promise<void>;
  /** SIGKILL: no shutdown hook runs, like a crash. */
  kill(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

export async function serverProcess(env: Record<string, string>, command: 'serve' | 'worker' = 'serve'): Promise<ServerProcess> {
  const port = Number(env.BATCHMEM_PORT ?? (await freePort()));
  let child: ChildProcess | undefined;
  let output = '';
  const url = `http://127.0.0.1:${port}`;
  const faults = Object.keys(env).some((name) => name.startsWith('BATCHMEM_FAULT_'));
  const entry = join(root, faults ? 'test/support/faults/cli.ts' : 'src/app/cli.ts');

  const exited = (proc: ChildProcess) =>
    new Promise<void>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : proc.once('exit', () => resolve())));

  const handle: ServerProcess = {
    url,
    port,
    output: () => output,
    pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    async start() {
      child = spawn(process.execPath, ['--max-semi-space-size=2', entry, command], {
        cwd: root,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', BATCHMEM_LOG_LEVEL: 'info', ...env, BATCHMEM_PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      if (command === 'worker') return;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`batchmem exited with ${child.exitCode} while starting:\n${output.slice(-4000)}`);
        try {
          const response = await fetch(`${url}/healthz`);
          if (response.ok) return;
        } catch {
          // not listening yet
        }
        await sleep(100);
      }
      throw new Error(`batchmem did not answer /healthz within 60 s:\n${output.slice(-4000)}`);
    },
    async kill() {
      if (!child) return;
      child.kill('SIGKILL');
      await exited(child);
    },
    async stop() {
      if (!child) return;
      child.kill('SIGTERM');
      const done = exited(child);
      const timeout = sleep(15_000).then(() => child?.kill('SIGKILL'));
      await Promise.race([done, timeout]);
      await done;
    },
    async restart() {
      await handle.stop();
      await handle.start();
    },
  };
  return handle;
}
