// A webhook receiver on loopback that verifies every delivery with the `standardwebhooks` package, and the Papr
// signature header with its own HMAC of the body.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';

export interface Delivery {
  id: string;
  verified: boolean;
  /** `X-Webhook-Signature` matched an HMAC-SHA256 of the body computed here with the secret string. */
  paprVerified: boolean;
  event: string | undefined;
  bodyBytes: number;
  headers: Record<string, string | string[] | undefined>;
  payload: { type: string; timestamp: string; data: { id: string; status: string; request_counts: Record<string, number> } };
  answeredWith: number | 'timeout';
}

/** `gone` answers 410 Gone, which stops the retries. */
export type ReceiverMode = 'ok' | 'fail' | 'hang' | 'gone';

export interface WebhookReceiver {
  url: string;
  deliveries: Delivery[];
  setMode(mode: ReceiverMode): void;
  /** Deliveries for one batch id that the receiver accepted. */
  accepted(batchId: string): Delivery[];
  waitFor(batchId: string, timeoutMs?: number): Promise<Delivery>;
  close(): Promise<void>;
}

/** Listens on loopback unless `host` names another local address (e.g. the Docker bridge, for containers). */
export async function webhookReceiver(secret: string, host = '127.0.0.1'): Promise<WebhookReceiver> {
  // A plain (non-whsec_) secret is the raw key; see src/adapters/webhook/notifier.ts.
  const verifier = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });
  const deliveries: Delivery[] = [];
  let mode: ReceiverMode = 'ok';
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let verified = false;
      try {
        verifier.verify(body, {
          'webhook-id': String(req.headers['webhook-id']),
          'webhook-timestamp': String(req.headers['webhook-timestamp']),
          'webhook-signature': String(req.headers['webhook-signature']),
        });
        verified = true;
      } catch {
        verified = false;
      }
      const expected = Buffer.from('sha256=' + createHmac('sha256', Buffer.from(secret, 'utf8')).update(Buffer.concat(chunks)).digest('hex'));
      const sent = Buffer.from(String(req.headers['x-webhook-signature'] ?? ''));
      const paprVerified = sent.length === expected.length && timingSafeEqual(sent, expected);
      const answer = mode === 'hang' ? 'timeout' : mode === 'fail' ? 500 : mode === 'gone' ? 410 : verified ? 204 : 401;
      deliveries.push({
        id: String(req.headers['webhook-id']),
        verified,
        paprVerified,
        event: req.headers['x-webhook-event'] as string | undefined,
        bodyBytes: Buffer.concat(chunks).byteLength,
        headers: { ...req.headers },
        payload: JSON.parse(body),
        answeredWith: answer,
      });
      if (answer === 'timeout') return; // never answer; the sender times out
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as { port: number };
  const receiver: WebhookReceiver = {
    url: `http://${host}:${port}/hooks/batchmem`,
    deliveries,
    setMode: (next) => (mode = next),
    accepted: (batchId) => deliveries.filter((d) => d.payload.data.id === batchId && d.answeredWith === 204),
    async waitFor(batchId, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const found = receiver.accepted(batchId)[0];
        if (found) return found;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no accepted webhook for batch ${batchId} within ${timeoutMs} ms`);
    },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  return receiver;
}
