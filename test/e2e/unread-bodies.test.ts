// Bodies the server answers before it has read them (a refused key, a replay of an existing batch), sent slowly on one
// keep-alive connection against the real server process. A short rest is read and thrown away and the connection
// serves the next request; a rest past the discard bound gets `Connection: close`, and the client still sends its
// whole body and reads the whole answer without a reset. Before, the HTTP adapter destroyed the socket 500 ms after
// such an answer, although it said keep-alive. Last, the idle timeout: an upload may take as long as it needs while bytes
// keep arriving, and a connection that goes quiet is closed.
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, memory } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from './http.suite.ts';

const keys = testKeys();
const dir = tempDir();
let server: ServerProcess;

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One HTTP/1.1 connection written and read by hand, so that which socket carries which request is not in doubt. */
class Connection {
  private received = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  /** The first socket error, if any (EPIPE, ECONNRESET...). */
  error: Error | undefined;
  ended = false;

  private readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (error) => {
      this.error ??= error;
      this.wake?.();
    });
  }

  static open(url: string): Promise<Connection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      // Half-open allowed, as a client that keeps sending after the server's FIN (a lingering close) would.
      const socket = connect({ port: Number(port), host: hostname, allowHalfOpen: true }, () => resolve(new Connection(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (error) => (error ? reject(error) : resolve())));
  }

  /** The head of a request; `body` is then written by the caller. */
  head(method: string, path: string, headers: Record<string, string>): Promise<void> {
    const lines = Object.entries({ host: 'localhost', ...headers }).map(([name, value]) => `${name}: ${value}\r\n`);
    return this.write(`${method} ${path} HTTP/1.1\r\n${lines.join('')}\r\n`);
  }

  /** Reads the next answer off the connection (Content-Length or chunked); fails on a socket error or after `timeoutMs`. */
  async answer(timeoutMs = 10_000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = this.parse();
      if (parsed) return parsed;
      if (this.error) throw new Error(`socket error before a whole answer: ${this.error.message}`);
      if (this.ended) throw new Error(`connection closed before a whole answer; had ${JSON.stringify(this.received.toString('latin1').slice(0, 200))}`);
      if (Date.now() > deadline) throw new Error('no whole answer in time');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private parse(): Answer | undefined {
    const headEnd = this.received.indexOf('\r\n\r\n');
    if (headEnd < 0) return undefined;
    const [statusLine, ...headerLines] = this.received.subarray(0, headEnd).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of headerLines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
    const status = Number(statusLine!.split(' ')[1]);
    let rest = this.received.subarray(headEnd + 4);
    let body: Buffer;
    if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (rest.length < length) return undefined;
      body = rest.subarray(0, length);
      rest = rest.subarray(length);
    } else if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const sizeEnd = rest.indexOf('\r\n');
        if (sizeEnd < 0) return undefined;
        const size = parseInt(rest.subarray(0, sizeEnd).toString('latin1'), 16);
        if (rest.length < sizeEnd + 2 + size + 2) return undefined;
        parts.push(rest.subarray(sizeEnd + 2, sizeEnd + 2 + size));
        rest = rest.subarray(sizeEnd + 2 + size + 2);
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      body = Buffer.alloc(0);
    }
    this.received = rest;
    return { status, headers, body: body.toString('utf8') };
  }
}

/** Writes `body` in `chunks` pieces spread over `spreadMs`, as a slow client would. */
async function sendSlowly(connection: Connection, body: Buffer, chunks: number, spreadMs: number): Promise<void> {
  const size = Math.ceil(body.length / chunks);
  for (let start = 0; start < body.length; start += size) {
    await connection.write(body.subarray(start, start + size));
    if (start + size < body.length) await sleep(spreadMs / (chunks - 1));
  }
}

const ndjson = (bytes: number) => Buffer.alloc(bytes, '{"content":"unread rest of a body"}\n');
const badKey = 'Bearer key-wrong-00000000000000000000';

describe('bodies answered before they were read, against the server process', () => {
  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path });
    await server.start();
    expect((await apiClient(server.url, keys[0]!.key).submitJson({ memories: [memory(1)], batch_id: 'unread-existing' })).status).toBe(202);
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
    dir.remove();
  });

  const early = [
    { name: 'a refused key (401 at the headers)', path: '/v1/memory/batch', authorization: badKey, status: 401 },
    { name: 'a replay of an existing batch (200)', path: '/v1/memory/batch?batch_id=unread-existing', authorization: `Bearer ${keys[0]!.key}`, status: 200 },
  ];

  for (const answered of early) {
    it(`keeps the connection after ${answered.name} while a short body arrives for 1.5 s, and serves the next request on it`, async () => {
      const connection = await Connection.open(server.url);
      try {
        const body = ndjson(48 * 1024);
        await connection.head('POST', answered.path, {
          authorization: answered.authorization, 'content-type': 'application/x-ndjson', 'content-length': String(body.length),
        });
        await connection.write(body.subarray(0, 1024));
        const first = await connection.answer();
        expect(first.status).toBe(answered.status);
        expect(first.headers.connection).toBe('keep-alive');
        // The rest keeps coming for three times the adapter's 500 ms drain.
        await sendSlowly(connection, body.subarray(1024), 6, 1500);
        const next = JSON.stringify({ memories: [{ content: `sent on the same connection after ${answered.name}` }] });
        await connection.head('POST', '/v1/memory/batch', {
          authorization: `Bearer ${keys[0]!.key}`, 'content-type': 'application/json', 'content-length': String(next.length),
        });
        await connection.write(next);
        const second = await connection.answer();
        expect(second.status).toBe(202);
        expect(connection.error).toBeUndefined();
      } finally {
        connection.close();
      }
    }, 30_000);

    it(`says Connection: close after ${answered.name} with 2 MiB still to come, and lets the client send it all and read the answer`, async () => {
      const connection = await Connection.open(server.url);
      try {
        const body = ndjson(2 * 1024 * 1024);
        await connection.head('POST', answered.path, {
          authorization: answered.authorization, 'content-type': 'application/x-ndjson', 'content-length': String(body.length),
        });
        await connection.write(body.subarray(0, 1024));
        const first = await connection.answer();
        expect(first.status).toBe(answered.status);
        expect(first.headers.connection).toBe('close');
        const parsed = JSON.parse(first.body) as { status?: number; id?: string };
        if (answered.status === 401) {
          expect(first.headers['content-type']).toMatch(/^application\/problem\+json/);
          expect(parsed.status).toBe(401);
        } else {
          expect(parsed.id).toBeDefined();
        }
        // Every write of the rest succeeds: no EPIPE or ECONNRESET while the client still sends.
        await sendSlowly(connection, body.subarray(1024), 16, 1500);
        expect(connection.error).toBeUndefined();
        // And the server then ends the connection.
        await expect.poll(() => connection.ended, { timeout: 10_000 }).toBe(true);
      } finally {
        connection.close();
      }
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    }, 30_000);
  }
});

describe('an upload has no overall deadline, only an idle one (BATCHMEM_IDLE_TIMEOUT_MS)', () => {
  const idleDir = tempDir();
  let idle: ServerProcess;
  beforeAll(async () => {
    idle = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: idleDir.path, BATCHMEM_IDLE_TIMEOUT_MS: '1500' });
    await idle.start();
  }, 90_000);
  afterAll(async () => {
    await idle?.stop();
    idleDir.remove();
  });

  const headers = (body: Buffer) => ({
    authorization: `Bearer ${keys[0]!.key}`, 'content-type': 'application/x-ndjson', 'content-length': String(body.length),
  });

  it('takes a body that keeps arriving for longer than three idle timeouts', async () => {
    const connection = await Connection.open(idle.url);
    try {
      const body = Buffer.from('{"content":"a memory sent slowly"}\n'.repeat(2000));
      await connection.head('POST', '/v1/memory/batch?batch_id=slow-but-steady', headers(body));
      // Eight pieces, one a second: 7 s in all, never 1.5 s without a byte.
      await sendSlowly(connection, body, 8, 7000);
      const answer = await connection.answer();
      expect(answer.status).toBe(202);
      expect(connection.error).toBeUndefined();
    } finally {
      connection.close();
    }
    const done = await apiClient(idle.url, keys[0]!.key).waitForFinal('slow-but-steady');
    expect(done.status).toBe('completed');
  }, 60_000);

  it('closes a connection whose body stops arriving, stores nothing of it, and keeps serving', async () => {
    const connection = await Connection.open(idle.url);
    const startedAt = Date.now();
    try {
      const body = ndjson(64 * 1024);
      await connection.head('POST', '/v1/memory/batch?batch_id=went-quiet', headers(body));
      await connection.write(body.subarray(0, 10 * 1024));
      await expect.poll(() => connection.ended || connection.error !== undefined, { timeout: 15_000 }).toBe(true);
      // Not before the idle timeout (1.5 s) has passed.
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1400);
    } finally {
      connection.close();
    }
    expect((await apiClient(idle.url, keys[0]!.key).request('/v1/batch/went-quiet')).status).toBe(404);
    expect((await fetch(`${idle.url}/healthz`)).status).toBe(200);
  }, 60_000);
});
