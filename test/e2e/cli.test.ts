// The CLI against the real server, through a proxy that drops connections mid-stream: `batchmem submit --watch`
// resumes the event stream with Last-Event-ID and ends once, `batchmem results -o` resumes its download by index and
// writes exactly the file the API serves.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, memory } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from './http.suite.ts';

const root = join(import.meta.dirname, '..', '..');

/** A TCP proxy to `port` that cuts the first `drops` connections whose request line matches `path` after `afterBytes`. */
async function droppingProxy(port: number, rules: { path: RegExp; drops: number; afterBytes: number }[]) {
  const dropped: string[] = [];
  /** The head of every request matching a rule's path, dropped or not. */
  const seen: string[] = [];
  const server: Server = createServer((client: Socket) => {
    const upstream = connect(port, '127.0.0.1');
    let rule: (typeof rules)[number] | undefined;
    let sent = 0;
    // Every request on the connection (keep-alive reuses it) is checked against the rules as it starts.
    client.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1').split('\r\n')[0] ?? '';
      if (/^[A-Z]+ \S+ HTTP\/1\.1$/.test(line)) {
        if (rules.some((r) => r.path.test(line))) seen.push(chunk.toString('latin1').split('\r\n\r\n')[0]!.toLowerCase());
        rule = rules.find((r) => r.path.test(line) && r.drops > 0);
        sent = 0;
        if (rule) {
          rule.drops -= 1;
          dropped.push(line);
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (rule && sent + chunk.byteLength > rule.afterBytes) {
        // Only the bytes up to the cut reach the client, then the connection ends: always a truncated answer.
        client.end(chunk.subarray(0, Math.max(0, rule.afterBytes - sent)), () => client.destroy());
        upstream.destroy();
        return;
      }
      sent += chunk.byteLength;
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: proxyPort } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${proxyPort}`, dropped, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'src/app/cli.ts'), ...args], { cwd: root, env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('the CLI over a connection that drops', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let api: ApiClient;

  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_SEGMENT_MAX_ITEMS: '200', BATCHMEM_SEGMENT_CONCURRENCY: '1' });
    await server.start();
    api = apiClient(server.url, keys[0]!.key);
  });
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  it('submit --watch resumes the event stream and reports the batch completed once', async () => {
    const file = join(dir.path, 'watched.ndjson');
    writeFileSync(file, Array.from({ length: 20_000 }, (_, i) => JSON.stringify(memory(i))).join('\n') + '\n');
    // The first two event streams are cut after a few kilobytes (the retry hint and an event or two).
    const proxy = await droppingProxy(server.port, [{ path: /\/events /, drops: 2, afterBytes: 4000 }]);
    try {
      const run = await cli(['submit', file, '--watch', '--batch-id', 'watched', '--url', proxy.url, '--key', keys[0]!.key]);
      expect(run.code, run.stderr).toBe(0);
      expect(proxy.dropped).toHaveLength(2);
      expect(run.stdout.match(/batch watched: completed/g)).toHaveLength(1);
      // Each reconnect named the last event it had seen.
      expect(proxy.seen.length).toBeGreaterThanOrEqual(2);
      expect(proxy.seen[0]).not.toContain('last-event-id');
      for (const head of proxy.seen.slice(1)) expect(head).toMatch(/last-event-id: \d+/);
    } finally {
      await proxy.close();
    }
    expect((await api.get('watched')).status).toBe('completed');
  });

  it('results -o resumes a dropped download and writes exactly the file the API serves', async () => {
    const memories = Array.from({ length: 30_000 }, (_, i) => memory(i));
    expect((await api.submitJson({ memories, batch_id: 'downloaded' })).status).toBe(202);
    expect((await api.waitForFinal('downloaded')).status).toBe('completed');
    const expected = await (await api.request('/v1/batch/downloaded/results.ndjson')).text();
    const proxy = await droppingProxy(server.port, [{ path: /results\.ndjson[ ?]/, drops: 2, afterBytes: 30_000 }]);
    const output = join(dir.path, 'results.ndjson');
    try {
      const run = await cli(['results', 'downloaded', '-o', output, '--url', proxy.url, '--key', keys[0]!.key]);
      expect(run.code, run.stderr).toBe(0);
      expect(proxy.dropped, `${JSON.stringify(proxy.dropped)} ${run.stderr.slice(-500)}`).toHaveLength(2);
      expect(run.stderr).toContain('30000 lines');
    } finally {
      await proxy.close();
    }
    const written = readFileSync(output, 'utf8');
    expect(written.split('\n').length - 1).toBe(30_000);
    expect(written).toBe(expected);
    const errorsOnly = await cli(['results', 'downloaded', '--errors', '--url', server.url, '--key', keys[0]!.key]);
    expect(errorsOnly).toMatchObject({ code: 0, stdout: '' });
  });
});
