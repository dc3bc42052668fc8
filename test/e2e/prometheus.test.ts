// A real Prometheus scrapes a real API process and a Temporal worker process during a batch, with the alert rules
// loaded; afterwards every PromQL expression of the Grafana dashboard and of the alerts returns data, so no panel or
// rule names a metric that does not exist. (An alert's comparison filters samples out when all is well; the check
// evaluates it with `bool`, which keeps them and still needs every operand to have data.)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { type PrometheusServer, startPrometheus } from '../support/prometheus.ts';
import { freePort, serverProcess, type ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from './http.suite.ts';

const root = join(import.meta.dirname, '..', '..');
const dashboard = JSON.parse(readFileSync(join(root, 'deploy/grafana/batchmem.json'), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};

let temporal: TemporalBackend;
let prometheus: PrometheusServer;
let hooks: WebhookReceiver;
let api: ServerProcess;
let worker: ServerProcess;
const dir = tempDir();
const keys = testKeys();
const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');

beforeAll(async () => {
  [temporal, hooks] = await Promise.all([startTemporal(), webhookReceiver(webhookSecret)]);
  const workerMetricsPort = await freePort();
  const env = {
    ...commonEnv(keys),
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace,
    TEMPORAL_TASK_QUEUE: uniqueId('scraped'),
    BATCHMEM_SEGMENT_MAX_ITEMS: '200',
    BATCHMEM_SEGMENT_CONCURRENCY: '2',
    BATCHMEM_HOST: '127.0.0.1',
  };
  api = await serverProcess(env);
  await api.start();
  worker = await startWorkerProcess({ ...env, BATCHMEM_WORKER_METRICS_PORT: String(workerMetricsPort) }, 'scraped-worker');
  prometheus = await startPrometheus({
    jobs: { 'batchmem-api': [`127.0.0.1:${api.port}`], 'batchmem-worker': [`127.0.0.1:${workerMetricsPort}`] },
    ruleFiles: [join(root, 'deploy/prometheus/alerts.yml')],
  });
});
afterAll(async () => {
  await prometheus?.stop();
  await Promise.allSettled([api?.stop(), worker?.stop()]);
  await hooks?.close();
  dir.remove();
  await stopAllBackends();
});
printLogsOnFailure(() => [temporal]);

/** Comparisons against a number keep their samples as 0/1 instead of filtering them. */
function withBool(expr: string): string {
  return expr.replace(/(==|!=|>=|<=|>|<)\s*(?=-?[0-9])/g, '$1 bool ');
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms; prometheus said:\n${prometheus.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('Prometheus scraping an API and a worker during a Temporal batch', () => {
  it('finds data for every query of the dashboard and the alert rules', async () => {
    const client = apiClient(api.url, keys[0]!.key);
    const total = 20_000;
    const submitted = await client.submitNdjson(ndjsonStream(total), `?batch_id=scraped&webhook_url=${encodeURIComponent(hooks.url)}`, {
      'webhook-secret': webhookSecret,
    });
    expect(submitted.status).toBe(202);
    // While it runs, the API's gauges show it.
    const running = await waitFor('a running batch in batchmem_batches_running', async () => {
      const [sample] = await prometheus.query('sum(batchmem_batches_running)');
      return Number(sample?.value[1]) >= 1 ? Number(sample!.value[1]) : undefined;
    });
    expect(running).toBeGreaterThanOrEqual(1);
    expect((await client.waitForFinal('scraped')).status).toBe('completed');
    expect((await hooks.waitFor('scraped')).verified).toBe(true);
    // The worker's last figures have been scraped.
    await waitFor('the worker scrape to show every memory', async () => {
      const [sample] = await prometheus.query('sum(batchmem_items_total{job="batchmem-worker"})');
      return Number(sample?.value[1]) === total ? true : undefined;
    });
    expect((await prometheus.targets()).map((t) => `${t.job} ${t.health}`).sort()).toEqual(['batchmem-api up', 'batchmem-worker up']);

    // The rules as Prometheus loaded them (so they parse, and these are the exact queries it evaluates).
    const rules = (await (await fetch(`${prometheus.url}/api/v1/rules`)).json()) as {
      data: { groups: { rules: { name: string; query: string; health: string; lastError?: string }[] }[] };
    };
    const alertQueries = rules.data.groups.flatMap((g) => g.rules);
    expect(alertQueries.map((r) => r.name).sort()).toEqual([
      'BatchmemBacklogOld',
      'BatchmemBatchNoProgress',
      'BatchmemSegmentFailureRate',
      'BatchmemSinkLatencyHigh',
      'BatchmemWebhookFailureRate',
    ]);
    for (const rule of alertQueries) expect(rule.health, `${rule.name}: ${rule.lastError}`).not.toBe('err');

    const queries = [
      ...dashboard.panels.flatMap((panel) => panel.targets.map((target) => ({ source: `panel "${panel.title}"`, expr: target.expr }))),
      ...alertQueries.map((rule) => ({ source: `alert ${rule.name}`, expr: withBool(rule.query) })),
    ];
    expect(queries.length).toBeGreaterThanOrEqual(25);
    // A rate() needs two scrapes of a series after it first appears, and a loaded machine can time out a scrape
    // (its timeout is the 1 s interval); so a query still without data is asked again until a deadline.
    let empty = queries;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const still: typeof queries = [];
      for (const query of empty) if ((await prometheus.query(query.expr)).length === 0) still.push(query);
      empty = still;
      if (empty.length === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const scrapes = (await prometheus.targets()).map((t) => `${t.job} ${t.health} ${t.lastError}`);
    expect(empty.map(({ source, expr }) => `${source}: ${expr}`), `queries without data (targets: ${scrapes.join('; ')})`).toEqual([]);

    // And every metric name any of them mentions exists in the scrape.
    const names = new Set(queries.flatMap(({ expr }) => expr.match(/\bbatchmem_[a-z0-9_]+/g) ?? []));
    const missing: string[] = [];
    for (const name of names) {
      if ((await prometheus.query(`count({__name__="${name}"})`)).length === 0) missing.push(name);
    }
    expect(missing, 'metrics named but never scraped').toEqual([]);
    console.log(`[prometheus] ${queries.length} queries (${dashboard.panels.length} panels, ${alertQueries.length} alerts) over ${names.size} metrics: all return data`);
  });
});
