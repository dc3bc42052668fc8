// A loopback memory service for the HTTP sink's tests: it speaks Papr's add-memory routes (single and batch) and
// signed NDJSON, stores each memory once, replays the answer to a repeated Idempotency-Key, and measures what a
// well-behaved client must respect: the request rate per one-second window and the Retry-After windows it announced.
// A test scripts faults through `plan`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ArrivingRequest {
  path: string;
  key: string;
  memoryIds: string[];
  /** Requests received so far, this one included. */
  seq: number;
}

/** What to do with a request before it is handled normally. */
export type Fault =
  | { kind: 'answer'; status: number; retryAfter?: string; body?: string }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'reset' }
  | undefined;

export interface ReceiverOptions {
  /** Standard Webhooks secret the NDJSON route verifies; without it NDJSON requests are refused. */
  secret?: string;
  apiKey?: string;
  /** Memories whose content contains this marker are refused with 400. */
  refuseMarker?: string;
  /** Whether /v1/memory/batch exists (a Papr target may lack it). */
  batchRoute?: boolean;
  plan?: (request: ArrivingRequest) => Fault;
}

export interface Arrival {
  atMs: number;
  path: string;
  key: string;
  memories: number;
  status: number | 'reset';
}

export interface SinkReceiver {
  url: string;
  /** Accepted memories by memory id: the Idempotency-Key that delivered it and the id the receiver gave it. */
  stored: Map<string, { key: string; sinkId: string; content: string; body: Record<string, unknown> }>;
  /** Idempotency-Keys of accepted requests, with the memory ids each carried. */
  acceptedKeys: Map<string, string[]>;
  arrivals: Arrival[];
  /** Retry-After windows announced: no request should arrive inside one (after the requests already in flight). */
  windows: { fromMs: number; untilMs: number }[];
  /** The most memories that arrived in any one-second window. */
  maxMemoriesPerSecond(): number;
  /** Requests that arrived inside an announced Retry-After window, more than `graceMs` after it was announced. */
  requestsInsideWindows(graceMs: number): Arrival[];
  setPlan(plan: ReceiverOptions['plan']): void;
  /** Down: the port refuses connections (the server stops listening); up: it listens on the same port again. */
  setDown(down: boolean): Promise<void>;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  body: string;
}

export async function sinkReceiver(options: ReceiverOptions = {}): Promise<SinkReceiver> {
  const stored: SinkReceiver['stored'] = new Map();
  const acceptedKeys = new Map<string, string[]>();
  const answers = new Map<string, Answer>();
  const arrivals: Arrival[] = [];
  const windows: SinkReceiver['windows'] = [];
  const verifier = options.secret ? new Webhook(options.secret) : undefined;
  let plan = options.plan;
  let down = false;
  let seq = 0;
  let nextId = 1;

  const send = (res: ServerResponse, arrival: Arrival, status: number, body: string, headers: Record<string, string> = {}) => {
    arrival.status = status;
    res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers });
    res.end(body);
  };
  const problem = (status: number, detail: string) => JSON.stringify({ type: 'about:blank', title: 'Refused', status, detail });

  const store = (key: string, memoryId: string, content: string, body: Record<string, unknown>): string => {
    const existing = stored.get(memoryId);
    if (existing) return existing.sinkId;
    const sinkId = `rcv_${nextId++}`;
    stored.set(memoryId, { key, sinkId, content, body });
    return sinkId;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const key = String(req.headers['idempotency-key'] ?? '');
    const arrival: Arrival = { atMs: Date.now(), path, key, memories: 0, status: 0 };
    arrivals.push(arrival);
    seq += 1;

    let memories: { memoryId: string; content: string; body: Record<string, unknown> }[];
    try {
      if (path === '/ingest') {
        if (!verifier) return send(res, arrival, 401, problem(401, 'no secret configured'));
        // NDJSON is not one JSON document: verify the signature without parsing the body as one.
        verifier.verify(text, req.headers as Record<string, string>, { jsonParse: false });
        if (req.headers['webhook-id'] !== key) return send(res, arrival, 400, problem(400, 'webhook-id differs from Idempotency-Key'));
        memories = text.trim().split('\n').map((line) => {
          const body = JSON.parse(line) as Record<string, unknown>;
          return { memoryId: String(body.memory_id), content: String(body.content), body };
        });
      } else if (path === '/v1/memory' || (path === '/v1/memory/batch' && options.batchRoute)) {
        if (options.apiKey && req.headers['x-api-key'] !== options.apiKey) return send(res, arrival, 401, problem(401, 'bad X-API-Key'));
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const list = path === '/v1/memory' ? [parsed] : (parsed.memories as Record<string, unknown>[]);
        memories = list.map((body) => ({
          memoryId: String((body.metadata as Record<string, unknown> | undefined)?.batchmem_memory_id),
          content: String(body.content),
          body,
        }));
      } else {
        return send(res, arrival, 404, problem(404, `no route ${path}`));
      }
    } catch (error) {
      return send(res, arrival, 400, problem(400, `unreadable request: ${(error as Error).message}`));
    }
    arrival.memories = memories.length;

    const fault = plan?.({ path, key, memoryIds: memories.map((m) => m.memoryId), seq });
    if (fault?.kind === 'reset') {
      arrival.status = 'reset';
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'answer') {
      if (fault.retryAfter !== undefined) {
        const seconds = /^\d+$/.test(fault.retryAfter) ? Number(fault.retryAfter) * 1000 : Date.parse(fault.retryAfter) - Date.now();
        windows.push({ fromMs: Date.now(), untilMs: Date.now() + seconds });
      }
      return send(res, arrival, fault.status, fault.body ?? problem(fault.status, 'scripted'), fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {});
    }

    const replay = answers.get(key);
    let answer: Answer;
    if (replay) {
      answer = replay;
    } else {
      const refused = options.refuseMarker ? memories.filter((m) => m.content.includes(options.refuseMarker!)) : [];
      if (refused.length > 0 && path !== '/v1/memory/batch') {
        answer = { status: 400, body: problem(400, `memory ${refused[0]!.memoryId} holds forbidden content`) };
      } else if (path === '/v1/memory') {
        const sinkId = store(key, memories[0]!.memoryId, memories[0]!.content, memories[0]!.body);
        answer = { status: 200, body: JSON.stringify({ code: 200, status: 'success', data: [{ memoryId: sinkId, objectId: sinkId }] }) };
      } else if (path === '/v1/memory/batch') {
        const errors: { index: number; error: string; code: number }[] = [];
        const successful: unknown[] = [];
        memories.forEach((m, index) => {
          if (refused.includes(m)) errors.push({ index, error: 'forbidden content', code: 400 });
          else successful.push({ data: [{ memoryId: store(key, m.memoryId, m.content, m.body) }] });
        });
        answer = { status: 200, body: JSON.stringify({ code: 200, status: 'success', successful, errors, total_processed: memories.length }) };
      } else {
        const results = memories.map((m) => ({ memory_id: m.memoryId, id: store(key, m.memoryId, m.content, m.body) }));
        answer = { status: 200, body: JSON.stringify({ results }) };
      }
      answers.set(key, answer);
      if (answer.status < 300) acceptedKeys.set(key, memories.map((m) => m.memoryId));
    }
    if (fault?.kind === 'slow') await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (res.destroyed) return;
    send(res, arrival, answer.status, answer.body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    stored,
    acceptedKeys,
    arrivals,
    windows,
    maxMemoriesPerSecond() {
      let best = 0;
      let sum = 0;
      let start = 0;
      for (let end = 0; end < arrivals.length; end += 1) {
        sum += arrivals[end]!.memories;
        while (arrivals[end]!.atMs - arrivals[start]!.atMs >= 1000) sum -= arrivals[start++]!.memories;
        best = Math.max(best, sum);
      }
      return best;
    },
    requestsInsideWindows(graceMs) {
      return arrivals.filter((a) => windows.some((w) => a.atMs > w.fromMs + graceMs && a.atMs < w.untilMs));
    },
    setPlan(next) {
      plan = next;
    },
    async setDown(value) {
      if (value === down) return;
      down = value;
      if (value) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      } else {
        await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      }
    },
    async close() {
      if (down) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
