// The HTTP webhook notifier against receivers on loopback (issue 15): the receiver's name is resolved once, by the
// connection, and the socket goes to the address that was checked; a failed lookup or a refused address is a failed
// attempt on the batch's record; Retry-After on 429 and 503 is read and honoured up to the backoff cap.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConnector } from 'undici';
import { HttpWebhookNotifier, type Resolver, retryAfter } from '../../src/adapters/webhook/notifier.ts';
import { deliverWebhook } from '../../src/app/processing/deliver-webhook.ts';
import { deliverWithRetries, runBatch } from '../../src/app/processing/run-batch.ts';
import { submitBatch } from '../../src/app/requests/submit-batch.ts';
import { defaultSettings, type OrchestratedServices } from '../../src/app/services.ts';
import type { WebhookMessage } from '../../src/ports/webhook-notifier.ts';
import { systemClock } from '../../src/ports/clock.ts';
import { tenantA } from '../support/batches.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake, RecordingOrchestrator } from '../support/fakes.ts';

interface Receiver {
  server: Server;
  port: number;
  /** TCP connections the receiver accepted. */
  connections: number;
  requests: Array<{ at: number; body: string; id: string | undefined }>;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function receiver(answer: (call: number, request: IncomingMessage, response: ServerResponse) => void): Promise<Receiver> {
  const state: Omit<Receiver, 'server' | 'port'> = { connections: 0, requests: [] };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      state.requests.push({ at: Date.now(), body: Buffer.concat(chunks).toString('utf8'), id: request.headers['webhook-id'] as string | undefined });
      answer(state.requests.length, request, response);
    });
  });
  server.on('connection', () => (state.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return Object.assign(state, { server, port: (server.address() as AddressInfo).port }) as Receiver;
}

const message = (url: string): WebhookMessage => ({
  url,
  secret: 'whsec_' + Buffer.from('0123456789abcdef0123456789abcdef').toString('base64'),
  messageId: 'msg_test',
  payload: { type: 'batch.completed', timestamp: new Date(0).toISOString(), data: { ok: true } },
});

/** A public address from the resolver; nothing is ever dialled there (see `standIn`). */
const publicAddress = '93.184.215.14';

/**
 * The connection step with the public network replaced: a socket for `publicAddress` goes to a loopback receiver
 * standing in for the public host; any other address is dialled as it is. Records every address dialled.
 */
function standIn(publicHost: Receiver, dialled: string[]): buildConnector.connector {
  const real = buildConnector({ timeout: 2_000 });
  return (options, callback) => {
    dialled.push(options.hostname);
    if (options.hostname === publicAddress) return real({ ...options, hostname: '127.0.0.1', port: String(publicHost.port) }, callback);
    return real(options, callback);
  };
}

function servicesWith(notifier: HttpWebhookNotifier, settings: Partial<OrchestratedServices['settings']> = {}) {
  return {
    batches: new MemoryBatchRepository(),
    payloads: new MemoryPayloadStore(),
    sink: new MemorySinkFake(),
    webhooks: notifier,
    clock: systemClock,
    orchestrator: new RecordingOrchestrator(),
    // Private addresses are refused, as in production: the names in these cases only resolve through the test's resolver.
    settings: { ...defaultSettings, allowPrivateWebhooks: false, ...settings },
  } satisfies OrchestratedServices;
}

/** A finished batch whose webhook is owed to `url`. */
async function finishedBatch(services: ReturnType<typeof servicesWith>, url: string): Promise<string> {
  async function* items() {
    yield { content: 'one' };
  }
  const submitted = await submitBatch(services, { tenant: tenantA, requestId: 'r', items: items(), options: () => ({ webhookUrl: url }) });
  if (!submitted.ok) throw new Error(`submit failed: ${submitted.error.detail}`);
  await runBatch(services, submitted.value.batch.key, { workerId: 'w', signal: new AbortController().signal });
  return submitted.value.batch.key;
}

describe('the webhook notifier resolves once and connects to the address it checked', () => {
  it('a name answering a public address, then 127.0.0.1 (DNS rebinding) never reaches the loopback receiver; the attempt is recorded as refused', async () => {
    const internal = await receiver((_call, _request, response) => response.writeHead(204).end());
    // The public host is busy: it answers 503 and closes, so the next attempt needs a new connection (and lookup).
    const publicHost = await receiver((_call, _request, response) => response.writeHead(503, { connection: 'close' }).end());
    const lookups: string[] = [];
    const resolve: Resolver = async (hostname) => {
      lookups.push(hostname);
      return [{ address: lookups.length === 1 ? publicAddress : '127.0.0.1', family: 4 }];
    };
    const dialled: string[] = [];
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: false, resolve, dial: standIn(publicHost, dialled) });
    const services = servicesWith(notifier);
    try {
      const key = await finishedBatch(services, `http://rebind.example:${internal.port}/hook`);

      // First attempt: one lookup (the public answer), and the socket goes to that address, not to a second lookup's.
      const first = await deliverWebhook(services, key);
      expect(first).toMatchObject({ status: 'attempted', attempt: { delivered: false, retryable: true, error: 'receiver answered 503' } });
      expect(lookups).toEqual(['rebind.example']);
      expect(dialled).toEqual([publicAddress]);
      expect(publicHost.requests).toHaveLength(1);

      // Second attempt: the name now answers 127.0.0.1; the connection is refused before any socket opens.
      const second = await deliverWebhook(services, key);
      expect(second).toMatchObject({
        status: 'attempted',
        attempt: { delivered: false, retryable: false, error: 'refused: rebind.example resolves to 127.0.0.1 is a loopback address' },
      });
      expect(lookups).toEqual(['rebind.example', 'rebind.example']);
      expect(dialled).toEqual([publicAddress]);
      expect(internal.connections).toBe(0);
      expect(internal.requests).toHaveLength(0);
      expect((await services.batches.get(key))!.webhook).toMatchObject({
        delivered: false,
        attempts: 2,
        lastError: 'refused: rebind.example resolves to 127.0.0.1 is a loopback address',
      });

      // The retry loop stops at the refusal: no third lookup, no connection.
      await deliverWithRetries(services, key, new AbortController().signal);
      expect(internal.connections).toBe(0);
    } finally {
      await notifier.close();
    }
  });

  it('refuses a name when any of its addresses is private, even if the first is public', async () => {
    const internal = await receiver((_call, _request, response) => response.writeHead(204).end());
    const resolve: Resolver = async () => [{ address: publicAddress, family: 4 }, { address: '10.0.0.7', family: 4 }];
    const dialled: string[] = [];
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: false, resolve, dial: standIn(internal, dialled) });
    try {
      expect(await notifier.send(message(`http://mixed.example:${internal.port}/hook`))).toEqual({
        delivered: false,
        retryable: false,
        error: 'refused: mixed.example resolves to 10.0.0.7 is a private address',
      });
      expect(dialled).toEqual([]);
      expect(internal.connections).toBe(0);
    } finally {
      await notifier.close();
    }
  });

  it('a failed lookup is a failed attempt, recorded on the batch, and nothing is sent', async () => {
    const internal = await receiver((_call, _request, response) => response.writeHead(204).end());
    const resolve: Resolver = async (hostname) => {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    };
    const dialled: string[] = [];
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: false, resolve, dial: standIn(internal, dialled) });
    const services = servicesWith(notifier);
    try {
      const key = await finishedBatch(services, `http://gone.example:${internal.port}/hook`);
      const step = await deliverWebhook(services, key);
      expect(step).toMatchObject({ status: 'attempted', attempt: { delivered: false, retryable: true, error: 'could not resolve gone.example: ENOTFOUND' } });
      expect((await services.batches.get(key))!.webhook).toMatchObject({ delivered: false, attempts: 1, lastError: 'could not resolve gone.example: ENOTFOUND' });
      expect(dialled).toEqual([]);
      expect(internal.connections).toBe(0);
    } finally {
      await notifier.close();
    }
  });

  it('tries the checked addresses in turn when one refuses the connection (localhost answering ::1 first)', async () => {
    const internal = await receiver((_call, _request, response) => response.writeHead(204).end());
    const resolve: Resolver = async () => [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }];
    const dialled: string[] = [];
    const refusingIpv6: buildConnector.connector = (options, callback) => {
      dialled.push(options.hostname);
      if (options.hostname === '::1') return callback(Object.assign(new Error('connect ECONNREFUSED ::1'), { code: 'ECONNREFUSED' }), null);
      return buildConnector({ timeout: 2_000 })(options, callback);
    };
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: true, resolve, dial: refusingIpv6 });
    try {
      expect(await notifier.send(message(`http://localhost:${internal.port}/hook`))).toEqual({ delivered: true, status: 204 });
      expect(dialled).toEqual(['::1', '127.0.0.1']);
    } finally {
      await notifier.close();
    }
  });

  it('with private webhooks allowed, a loopback receiver gets the signed delivery', async () => {
    const internal = await receiver((_call, _request, response) => response.writeHead(204).end());
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: true });
    try {
      expect(await notifier.send(message(`http://127.0.0.1:${internal.port}/hook`))).toEqual({ delivered: true, status: 204 });
      expect(internal.requests.map((request) => request.id)).toEqual(['msg_test']);
    } finally {
      await notifier.close();
    }
  });
});

describe('Retry-After', () => {
  it('reads whole seconds and HTTP dates; anything else is no hint', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfter('120', now)).toBe(120_000);
    expect(retryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(retryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    for (const value of [undefined, '', '-5', '1.5', 'soon', '2026-01-01']) expect(retryAfter(value, now)).toBeUndefined();
  });

  it('is passed on for 429 and 503 only', async () => {
    const statuses = [429, 503, 500];
    const busy = await receiver((call, _request, response) => response.writeHead(statuses[call - 1]!, { 'retry-after': '7' }).end());
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: true });
    try {
      const url = `http://127.0.0.1:${busy.port}/hook`;
      expect(await notifier.send(message(url))).toEqual({ delivered: false, retryable: true, error: 'receiver answered 429', retryAfterMs: 7_000 });
      expect(await notifier.send(message(url))).toEqual({ delivered: false, retryable: true, error: 'receiver answered 503', retryAfterMs: 7_000 });
      expect(await notifier.send(message(url))).toEqual({ delivered: false, retryable: true, error: 'receiver answered 500' });
    } finally {
      await notifier.close();
    }
  });

  it('the local runner waits as long as the receiver asks, up to the backoff cap', async () => {
    // 429 asking for 1 s, then 503 asking for an hour (capped at 1.5 s), then 204. Without the hints the waits
    // would be 5 to 10 ms and 10 to 20 ms.
    const busy = await receiver((call, _request, response) => {
      if (call === 1) response.writeHead(429, { 'retry-after': '1' }).end();
      else if (call === 2) response.writeHead(503, { 'retry-after': new Date(Date.now() + 3_600_000).toUTCString() }).end();
      else response.writeHead(204).end();
    });
    const notifier = new HttpWebhookNotifier({ timeoutMs: 2_000, allowPrivate: true });
    const services = servicesWith(notifier, { allowPrivateWebhooks: true, webhookBaseDelayMs: 10, webhookMaxDelayMs: 1_500 });
    try {
      const key = await finishedBatch(services, `http://127.0.0.1:${busy.port}/hook`);
      await deliverWithRetries(services, key, new AbortController().signal);
      expect((await services.batches.get(key))!.webhook).toMatchObject({ delivered: true, attempts: 3 });
      const [first, second, third] = busy.requests.map((request) => request.at) as [number, number, number];
      expect(second - first).toBeGreaterThanOrEqual(990);
      expect(third - second).toBeGreaterThanOrEqual(1_490);
      expect(third - second).toBeLessThan(10_000);
      // Every attempt sent the same event.
      expect(new Set(busy.requests.map((request) => request.body)).size).toBe(1);
    } finally {
      await notifier.close();
    }
  });
});
