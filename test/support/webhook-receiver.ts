// A webhook receiver on loopback that verifies every delivery with the `standardwebhooks` package.
import { createServer, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';

export interface Delivery {
  id: string;
  verified: boolean;
  payload: { type: string; timestamp: string; data: { id: string; status: string; request_counts: Record<string, number> } };
  answeredWith: number | 'timeout';
}

export type ReceiverMode = 'ok' | 'fail' | 'hang';

export interface WebhookReceiver {
  url: string;
  deliveries: Delivery[];
  setMode(mode: ReceiverMode): void;
  /** Deliveries for one batch id that the receiver accepted. */
  accepted(batchId: string): Delivery[];
  waitFor(batchId: string, timeoutMs?: number): Promise<Delivery>;
  close(): Promise<void>;
}

export async function webhookReceiver(secret: string): Promise<WebhookReceiver> {
  const verifier = new Webhook(secret);
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
      const answer = mode === 'hang' ? 'timeout' : mode === 'fail' ? 500 : verified ? 204 : 401;
      deliveries.push({ id: String(req.headers['webhook-id']), verified, payload: JSON.parse(body), answeredWith: answer });
      if (answer === 'timeout') return; // never answer; the sender times out
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const receiver: WebhookReceiver = {
    url: `http://127.0.0.1:${port}/hooks/batchmem`,
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
