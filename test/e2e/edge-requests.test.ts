// Decompression bombs against the real server process (issue 15): a gzip body is decoded as it streams and the body
// limit counts decoded bytes, so a bomb is 413 once it passes the limit and the server's memory does not follow it.
import { gzipSync, createGzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, testKeys } from './http.suite.ts';

const keys = testKeys();
const dir = tempDir();
let server: ServerProcess;
afterAll(() => dir.remove());

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

/** gzip of `{"memories":[` + `spaceBytes` spaces + one memory + `]}`, compressed as a stream (never held whole). */
async function gzipBomb(spaceBytes: number): Promise<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024, ' ');
  async function* source() {
    yield Buffer.from('{"memories":[');
    for (let sent = 0; sent < spaceBytes; sent += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, spaceBytes - sent));
    yield Buffer.from('{"content":"x"}]}');
  }
  const parts: Buffer[] = [];
  for await (const part of Readable.from(source()).pipe(createGzip({ level: 9 }))) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function send(body: Buffer): Promise<number> {
  const response = await fetch(`${server.url}/v1/memory/batch`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys[0]!.key}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body: new Uint8Array(body),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('gzip bombs against the server process', () => {
  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_MAX_JSON_BODY_BYTES: String(64 * 1024) });
    await server.start();
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('answers 413 to bombs of 1 KiB (1 MiB decoded) and 256 KiB (256 MiB decoded) with RSS growing by less than 32 MiB', async () => {
    const small = gzipSync(Buffer.concat([Buffer.from('{"memories":['), Buffer.alloc(1024 * 1024, ' '), Buffer.from('{"content":"x"}]}')]), { level: 9 });
    expect(small.byteLength).toBeLessThanOrEqual(1100);
    const large = await gzipBomb(256 * 1024 * 1024);
    // Warm up the route (first-request compilation is not what is measured), then take the baseline.
    expect(await send(gzipSync(Buffer.from('{"memories":[{"content":"warm-up"}]}')))).toBe(202);
    const pid = server.pid()!;
    const before = rssMiB(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 20);
    try {
      for (let round = 0; round < 20; round += 1) expect(await send(small)).toBe(413);
      expect(await send(large)).toBe(413);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMiB(pid));
    console.log(`gzip bombs: ${small.byteLength} B and ${large.byteLength} B compressed, RSS ${before.toFixed(1)} -> peak ${peak.toFixed(1)} MiB`);
    expect(peak - before).toBeLessThan(32);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  }, 120_000);
});

/** Sends a request head with `Expect: 100-continue` and reads what comes back before any body byte is sent. */
async function expectContinue(headers: Record<string, string>, body: string): Promise<{ first: string; final: string }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      const head = { host: url.host, 'content-type': 'application/json', expect: '100-continue', connection: 'close', ...headers };
      socket.write(`POST /v1/memory/batch HTTP/1.1\r\n${Object.entries(head).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    let received = '';
    let first: string | undefined;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (first === undefined && received.includes('\r\n\r\n')) {
        first = received.slice(0, received.indexOf('\r\n'));
        // Only now, and only if told to continue, does the body go out.
        if (first.includes(' 100 ')) {
          received = received.slice(received.indexOf('\r\n\r\n') + 4);
          socket.write(body);
        }
      }
    });
    socket.on('end', () => resolve({ first: first ?? '', final: received.split('\r\n')[0] ?? '' }));
    socket.on('error', reject);
    setTimeout(() => socket.destroy(new Error(`no answer; received ${JSON.stringify(received.slice(0, 200))}`)), 10_000);
  });
}

describe('Expect: 100-continue against the server process', () => {
  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_MAX_JSON_BODY_BYTES: String(64 * 1024) });
    await server.start();
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('answers a bad key with 401 and an oversized declared length with 413 before any 100 Continue', async () => {
    const body = '{"memories":[{"content":"after continue"}]}';
    const badKey = await expectContinue({ authorization: 'Bearer key-wrong-00000000000000000000', 'content-length': String(body.length) }, body);
    expect(badKey.first).toMatch(/^HTTP\/1\.1 401 /);
    const tooLong = await expectContinue({ authorization: `Bearer ${keys[0]!.key}`, 'content-length': String(1024 * 1024) }, body);
    expect(tooLong.first).toMatch(/^HTTP\/1\.1 413 /);
    const good = await expectContinue({ authorization: `Bearer ${keys[0]!.key}`, 'content-length': String(body.length) }, body);
    expect(good.first).toMatch(/^HTTP\/1\.1 100 /);
    expect(good.final).toMatch(/^HTTP\/1\.1 202 /);
  }, 60_000);
});
