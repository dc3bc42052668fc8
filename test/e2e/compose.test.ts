// The full stack of deploy/compose.yaml under Debian's docker-compose, from the locally built images: API, two
// workers, Temporal, PostgreSQL + Parse Server, the S3 store and Prometheus. A 20,000-memory batch goes through it to
// `completed` with its webhook verified (the receiver listens on the host's address on the stack's network),
// Prometheus scrapes all three batchmem processes, and `down -v` leaves nothing.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, ndjsonStream } from '../support/api-client.ts';
import { imageFor, requireDocker } from '../support/docker.ts';
import { freePort } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

const run = promisify(execFile);
const composeFile = join(import.meta.dirname, '..', '..', 'deploy', 'compose.yaml');
const project = `batchmem-test-${process.pid}`;
const key = `compose-key-${randomBytes(16).toString('hex')}`;
const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');
let env: Record<string, string>;
let apiUrl: string;
let prometheusUrl: string;
let receiver: WebhookReceiver;

async function compose(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('docker-compose', ['-f', composeFile, '-p', project, ...args], { env, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { code: number | string; stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT') throw new Error('docker-compose is not installed: apt-get install docker-compose (Debian), as .ci/run does');
    return { code: Number(failure.code), output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

async function docker(...args: string[]): Promise<string> {
  return (await run('docker', args)).stdout.trim();
}

async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const logs = await compose('logs', '--no-color', '--tail', '40');
      throw new Error(`${what} not within ${timeoutMs} ms; the stack's logs:\n${logs.output.slice(-8000)}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  await requireDocker();
  const images = {
    BATCHMEM_IMAGE: await imageFor('batchmem'),
    PARSE_SERVER_IMAGE: await imageFor('parse-server'),
    PROMETHEUS_IMAGE: await imageFor('prometheus'),
    POSTGRES_IMAGE: await imageFor('postgres'),
    S3_IMAGE: await imageFor('s3'),
    TEMPORAL_IMAGE: await imageFor('temporal'),
  };
  const [apiPort, prometheusPort] = [await freePort(), await freePort()];
  env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    ...images,
    BATCHMEM_API_PORT: String(apiPort),
    PROMETHEUS_PORT: String(prometheusPort),
    BATCHMEM_API_KEYS: JSON.stringify([{ key, organization: 'org-compose', user: 'ops' }]),
    BATCHMEM_ALLOW_PRIVATE_WEBHOOKS: 'true',
    BATCHMEM_WEBHOOK_BASE_DELAY_MS: '200',
  };
  apiUrl = `http://127.0.0.1:${apiPort}`;
  prometheusUrl = `http://127.0.0.1:${prometheusPort}`;
});

/** The host's address on the stack's network (its gateway): containers reach a receiver listening there. */
async function stackGateway(): Promise<string> {
  const network = `${project}_default`;
  const gateway = await docker('network', 'inspect', network, '--format', '{{range .IPAM.Config}}{{.Gateway}}{{end}}');
  if (gateway) return gateway;
  const subnet = await docker('network', 'inspect', network, '--format', '{{range .IPAM.Config}}{{.Subnet}}{{end}}');
  const match = /^(\d+\.\d+\.\d+)\.0\/\d+$/.exec(subnet);
  if (!match) throw new Error(`cannot tell the gateway of ${network} (subnet ${subnet || 'unknown'})`);
  return `${match[1]}.1`;
}

afterAll(async () => {
  // A failed test still takes its stack down.
  if (env) await compose('down', '-v', '--remove-orphans');
  await receiver?.close();
});

describe('the full stack under docker-compose', () => {
  it('comes up, completes a 20,000-memory batch with a verified webhook, is scraped by Prometheus, and goes down clean', async () => {
    const startedAt = Date.now();
    const up = await compose('up', '-d');
    expect(up.code, up.output).toBe(0);
    // `migrate` ran once and succeeded before the API started.
    const migrate = await compose('ps', '-a', 'migrate');
    expect(migrate.output).toMatch(/Exit 0/);
    await waitUntil('/readyz', async () => ((await fetch(`${apiUrl}/readyz`)).ok ? true : undefined), 120_000);
    const upSeconds = (Date.now() - startedAt) / 1000;
    console.log(`[compose] stack ready in ${upSeconds.toFixed(1)} s`);

    // The receiver listens on the host's address on the stack's network only, not on every interface.
    receiver = await webhookReceiver(webhookSecret, await stackGateway());
    const api = apiClient(apiUrl, key);
    const total = 20_000;
    const submitted = await api.submitNdjson(ndjsonStream(total), `?batch_id=compose-20k&webhook_url=${encodeURIComponent(receiver.url)}`, {
      'webhook-secret': webhookSecret,
    });
    expect(submitted.status, await submitted.clone().text()).toBe(202);
    const batchStartedAt = Date.now();
    const done = await api.waitForFinal('compose-20k', 240_000);
    const batchSeconds = (Date.now() - batchStartedAt) / 1000;
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ total, processed: total, succeeded: total, failed: 0 });
    const delivery = await receiver.waitFor('compose-20k', 60_000);
    expect(delivery.verified).toBe(true);
    expect(delivery.payload.type).toBe('batch.completed');

    // Prometheus in the stack scrapes the API and both workers, and sees every memory's outcome.
    const processed = await waitUntil(
      'Prometheus to see 20,000 processed memories',
      async () => {
        const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent('sum(batchmem_items_total)')}`);
        const body = (await response.json()) as { data: { result: { value: [number, string] }[] } };
        const value = Number(body.data.result[0]?.value[1]);
        return value === total ? value : undefined;
      },
      60_000,
    );
    expect(processed).toBe(total);
    const targets = (await (await fetch(`${prometheusUrl}/api/v1/targets`)).json()) as {
      data: { activeTargets: { labels: { job: string; instance: string }; health: string }[] };
    };
    expect(targets.data.activeTargets.map((t) => `${t.labels.instance} ${t.health}`).sort()).toEqual([
      'api:8787 up',
      'worker-1:9464 up',
      'worker-2:9464 up',
    ]);

    const down = await compose('down', '-v', '--remove-orphans');
    expect(down.code, down.output).toBe(0);
    const label = `label=com.docker.compose.project=${project}`;
    expect(await docker('ps', '-a', '--filter', label, '--format', '{{.Names}}')).toBe('');
    expect(await docker('volume', 'ls', '--filter', label, '--format', '{{.Name}}')).toBe('');
    expect(await docker('network', 'ls', '--filter', label, '--format', '{{.Name}}')).toBe('');
    console.log(`[compose] stack ready in ${upSeconds.toFixed(1)} s; ${total} memories completed in ${batchSeconds.toFixed(1)} s; down clean`);
  });
});
