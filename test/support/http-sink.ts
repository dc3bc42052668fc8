// The HTTP sink's test rigs: an HttpMemorySink with short waits so faults play out in seconds, and a real server
// process with BATCHMEM_SINK=http in front of a loopback receiver.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'vitest';
import { HttpMemorySink, type HttpSinkOptions } from '../../src/adapters/http/memory-sink.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';
import { apiClient, type ApiClient } from './api-client.ts';
import { tempDir } from './local-context.ts';
import { serverProcess, type ServerProcess } from './server-process.ts';
import { sinkReceiver, type SinkReceiver } from './sink-receiver.ts';

/** Memories whose content holds this are refused by the receiver with 400. */
export const refuseMarker = 'REFUSE-ME';

export function testHttpSink(overrides: Partial<HttpSinkOptions> & Pick<HttpSinkOptions, 'url' | 'format'>) {
  const dir = tempDir();
  const sink = new HttpMemorySink({
    chunkSize: overrides.format === 'papr' ? 1 : 25,
    concurrency: 8,
    ratePerSecond: 0,
    timeoutMs: 2000,
    maxRetryAfterMs: 5000,
    outageToleranceMs: 60_000,
    breaker: { failureThreshold: 5, openMs: 200, maxOpenMs: 2000 },
    retry: { maxAttempts: Infinity, initialDelayMs: 40, maxDelayMs: 1000 },
    ledgerPath: join(dir.path, 'deliveries.db'),
    ...overrides,
  });
  return {
    sink,
    async close() {
      await sink.close();
      dir.remove();
    },
  };
}

export interface Rig {
  server: ServerProcess;
  receiver: SinkReceiver;
  api: ApiClient;
  secrets: string[];
  close(): Promise<void>;
}

export async function rig(env: Record<string, string>): Promise<Rig> {
  const keys = testKeys();
  const dir = tempDir();
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const receiver = await sinkReceiver({ secret, refuseMarker });
  const server = await serverProcess({
    ...commonEnv(keys),
    BATCHMEM_FAULT_ITEM_MARKER: '',
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_SINK: 'http',
    BATCHMEM_SINK_URL: `${receiver.url}/ingest`,
    BATCHMEM_SINK_FORMAT: 'ndjson',
    BATCHMEM_SINK_SECRET: secret,
    BATCHMEM_SINK_CHUNK: '50',
    BATCHMEM_SINK_CONCURRENCY: '8',
    BATCHMEM_SINK_TIMEOUT_MS: '1000',
    BATCHMEM_SINK_BREAKER_PAUSE: '1s',
    BATCHMEM_SINK_MAX_RETRY_AFTER: '5s',
    ...env,
  });
  await server.start();
  return {
    server,
    receiver,
    api: apiClient(server.url, keys[0]!.key),
    secrets: [...keys.map((k) => k.key), secret.slice('whsec_'.length)],
    async close() {
      await server.stop();
      await receiver.close();
      dir.remove();
    },
  };
}

/** Sums a Prometheus counter's samples by one label. */
export async function counter(url: string, name: string, label: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sums: Record<string, number> = {};
  for (const match of text.matchAll(new RegExp(`^${name}\\{[^}]*${label}="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))) {
    sums[match[1]!] = (sums[match[1]!] ?? 0) + Number(match[2]);
  }
  return sums;
}

/** Each accepted memory under exactly one accepted Idempotency-Key. */
export function expectEachMemoryOnce(receiver: SinkReceiver, delivered: number): void {
  const carried = [...receiver.acceptedKeys.values()].flat();
  expect(receiver.stored.size).toBe(delivered);
  expect(carried.length).toBe(delivered);
  expect(new Set(carried).size).toBe(delivered);
}

