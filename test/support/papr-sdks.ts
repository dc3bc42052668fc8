// The official Papr SDKs as a test drives them: npm's @papr/memory in process, PyPI's papr-memory through
// test/papr/drive.py in the venv scripts/papr-python.sh makes. Plus a loopback proxy that holds an answer back, to
// make an SDK time out and retry.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import Papr from '@papr/memory';

const root = join(import.meta.dirname, '..', '..');
export const paprPython = process.env.BATCHMEM_PAPR_PYTHON ?? join(root, '.cache', 'papr-venv', 'bin', 'python');

export interface ClientOptions {
  baseURL: string;
  apiKey: string;
  timeoutMs?: number;
  maxRetries?: number;
}

/** What an SDK call gave the application: the parsed answer, or the error's status and body. */
export type SdkOutcome = { ok: true; parsed: Record<string, any> } | { ok: false; status: number | null; error: string; body: unknown };

export function jsClient(options: ClientOptions): Papr {
  return new Papr({
    xAPIKey: options.apiKey,
    baseURL: options.baseURL,
    timeout: options.timeoutMs ?? 30_000,
    maxRetries: options.maxRetries ?? 0,
    logLevel: 'off',
  });
}

/** Runs a JS SDK call, turning its thrown APIError into an outcome like the Python driver's. */
export async function jsCall(call: () => Promise<unknown>): Promise<SdkOutcome> {
  try {
    return { ok: true, parsed: (await call()) as Record<string, any> };
  } catch (error) {
    if (error instanceof Papr.APIError) return { ok: false, status: error.status ?? null, error: error.constructor.name, body: error.error };
    throw error;
  }
}

/** Makes one call with the Python SDK (`call` is a method of `client.memory`, e.g. `add_batch`). */
export async function pyCall(options: ClientOptions, call: string, args: unknown[], kwargs: Record<string, unknown> = {}): Promise<SdkOutcome> {
  if (!existsSync(paprPython)) {
    throw new Error(`no Python with papr-memory at ${paprPython}: run "bash scripts/papr-python.sh" (CI's .ci/run does)`);
  }
  const input = JSON.stringify({
    client: {
      base_url: options.baseURL,
      x_api_key: options.apiKey,
      timeout: (options.timeoutMs ?? 30_000) / 1000,
      max_retries: options.maxRetries ?? 0,
    },
    call,
    args,
    kwargs,
  });
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = execFile(paprPython, [join(root, 'test', 'papr', 'drive.py')], { cwd: root, timeout: 120_000, env: { PATH: process.env.PATH ?? '' } }, (error, out, err) => {
      if (error) reject(new Error(`drive.py failed: ${error.message}\n${err}`));
      else resolve(out);
    });
    child.stdin!.end(input);
  });
  return JSON.parse(stdout) as SdkOutcome;
}

export interface HoldingProxy {
  url: string;
  /** Requests seen, in order: method, path and when the upstream answer was written back. */
  requests: { method: string; path: string; held: boolean }[];
  close(): Promise<void>;
}

/**
 * A loopback proxy to `upstream` that forwards every request at once but holds the upstream's answer to the first
 * request matching `hold` for `holdMs` before writing it back (by then the client has given up and retried).
 */
export async function holdingProxy(upstream: string, hold: (method: string, path: string) => boolean, holdMs: number): Promise<HoldingProxy> {
  const requests: HoldingProxy['requests'] = [];
  let holding = true;
  const read = (req: IncomingMessage) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  const server: Server = createServer(async (req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const held = holding && hold(method, path);
    if (held) holding = false;
    requests.push({ method, path, held });
    const body = await read(req);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)) headers[name] = value;
    }
    const answer = await fetch(`${upstream}${path}`, { method, headers, body: body.byteLength > 0 ? new Uint8Array(body) : undefined });
    const text = Buffer.from(await answer.arrayBuffer());
    if (held) await new Promise((resolve) => setTimeout(resolve, holdMs));
    if (res.destroyed || req.socket.destroyed) return; // the client gave up on this one
    const out: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(name)) out[name] = value;
    });
    res.writeHead(answer.status, out).end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
