// A real Prometheus server (Debian's `prometheus` binary) started on loopback with a generated configuration,
// scraping the given targets every second. Fails loudly when the binary is missing or the server does not get ready.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './local-context.ts';
import { freePort } from './server-process.ts';

export interface PrometheusServer {
  url: string;
  /** Instant query; the result vector (or scalar as one sample). Throws on a query error, naming the query. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Targets and their last scrape's health. */
  targets(): Promise<{ job: string; instance: string; health: string; lastError: string }[]>;
  output(): string;
  stop(): Promise<void>;
}

export async function startPrometheus(options: { jobs: Record<string, string[]>; ruleFiles?: string[] }): Promise<PrometheusServer> {
  const dir = tempDir();
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    ...(options.ruleFiles?.length ? ['rule_files:', ...options.ruleFiles.map((file) => `  - ${JSON.stringify(file)}`)] : []),
    'scrape_configs:',
    ...Object.entries(options.jobs).flatMap(([job, targets]) => [
      `  - job_name: ${job}`,
      '    static_configs:',
      `      - targets: ${JSON.stringify(targets)}`,
    ]),
  ].join('\n');
  writeFileSync(join(dir.path, 'prometheus.yml'), config + '\n');
  let output = '';
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir.path, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir.path, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    dir.remove();
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const failed = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(r, 200, undefined))]);
    if (failed) throw new Error(`prometheus could not start (${failed.message}): apt-get install prometheus (Debian), as .ci/run does`);
    if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output.slice(-4000)}`);
    if (await fetch(`${url}/-/ready`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready within 30 s:\n${output.slice(-4000)}`);
    }
  }
  return {
    url,
    output: () => output,
    stop,
    async query(expr) {
      const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
      if (body.status !== 'success') throw new Error(`query failed: ${expr}: ${body.error}`);
      const { resultType, result } = body.data!;
      if (resultType === 'scalar') return [{ metric: {}, value: result as [number, string] }];
      return result as { metric: Record<string, string>; value: [number, string] }[];
    },
    async targets() {
      const body = (await (await fetch(`${url}/api/v1/targets`)).json()) as {
        data: { activeTargets: { labels: { job: string; instance: string }; health: string; lastError: string }[] };
      };
      return body.data.activeTargets.map((t) => ({ job: t.labels.job, instance: t.labels.instance, health: t.health, lastError: t.lastError }));
    },
  };
}
