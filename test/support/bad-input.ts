// Loads the bad-input corpus (test/fixtures/bad-input/*.json, described in its README) and sends a case to a server.
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { checkWebhookUrl } from '../../src/domain/webhook-address.ts';

const bodyPart = z.union([
  z.strictObject({ text: z.string() }),
  z.strictObject({ base64: z.string() }),
  z.strictObject({ repeat: z.string().min(1), times: z.number().int().positive() }),
]);

const badInputCase = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9-]+$/),
    covers: z.string().min(1),
    method: z.enum(['GET', 'POST', 'DELETE']),
    path: z.string().startsWith('/'),
    query: z.record(z.string(), z.string()).optional(),
    headers: z.record(z.string(), z.string()),
    auth: z.enum(['a', 'b', 'none', 'wrong', 'a-bearer-b-x-api-key']),
    body: z.string().optional(),
    bodyBase64: z.string().optional(),
    bodyParts: z.array(bodyPart).optional(),
    chunked: z.boolean().optional(),
    abortAfterBytes: z.number().int().positive().optional(),
    // `state: "processing"`: the batch is kept running (its sink write is held) instead of finished.
    setup: z.strictObject({ batch: z.strictObject({ tenant: z.enum(['a', 'b']), id: z.string(), state: z.enum(['completed', 'processing']).optional() }) }).optional(),
    expectedStatus: z.number().int().min(400).max(499).nullable(),
    detailIncludes: z.string().optional(),
  })
  .refine((c) => [c.body, c.bodyBase64, c.bodyParts].filter((b) => b !== undefined).length <= 1, 'at most one of body, bodyBase64, bodyParts')
  .refine((c) => (c.expectedStatus === null) === (c.abortAfterBytes !== undefined), 'expectedStatus is null exactly when the client aborts');

export type BadInputCase = z.infer<typeof badInputCase>;

/** The text that makes the corpus runs' sink hold a segment's write: the content of a `processing` setup batch. */
export const holdMarker = 'corpus: keep this batch running';

/** The setup batches the corpus refers to, each once. */
export function setupBatches(corpus: BadInputCase[]) {
  return [...new Map(corpus.flatMap((c) => (c.setup ? [[`${c.setup.batch.tenant}/${c.setup.batch.id}`, c.setup.batch] as const] : []))).values()];
}

/** A setup batch's memories: a held one carries the marker. */
export function setupMemories(batch: { state?: 'completed' | 'processing' | undefined }) {
  return batch.state === 'processing' ? [{ content: `one ${holdMarker}` }, { content: 'two' }] : [{ content: 'one' }, { content: 'two' }];
}

export const corpusDir = join(import.meta.dirname, '..', 'fixtures', 'bad-input');

export function loadCorpus(dir = corpusDir): BadInputCase[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const parsed = badInputCase.safeParse(JSON.parse(readFileSync(join(dir, file), 'utf8')));
      if (!parsed.success) throw new Error(`bad-input fixture ${file} is malformed: ${parsed.error.message}`);
      if (`${parsed.data.name}.json` !== file) throw new Error(`bad-input fixture ${file} is named ${parsed.data.name}`);
      return parsed.data;
    });
}

export function caseBody(c: BadInputCase): Buffer | undefined {
  if (c.body !== undefined) return Buffer.from(c.body, 'utf8');
  if (c.bodyBase64 !== undefined) return Buffer.from(c.bodyBase64, 'base64');
  if (c.bodyParts) {
    return Buffer.concat(
      c.bodyParts.map((part) =>
        'text' in part ? Buffer.from(part.text, 'utf8') : 'base64' in part ? Buffer.from(part.base64, 'base64') : Buffer.from(part.repeat.repeat(part.times), 'utf8'),
      ),
    );
  }
  return undefined;
}

/**
 * The webhook URLs a case names. Every one must be refused by the pure address check, or name a host under the
 * reserved `.invalid` TLD (which never resolves): a corpus case must never give the server a target it could call.
 */
export function unsafeWebhookTargets(c: BadInputCase): string[] {
  const urls: string[] = [];
  if (c.query?.webhook_url !== undefined) urls.push(c.query.webhook_url);
  const body = caseBody(c)?.toString('utf8');
  if (body && c.headers['content-type']?.startsWith('application/json')) {
    try {
      const parsed = JSON.parse(body) as { webhook_url?: unknown };
      if (typeof parsed?.webhook_url === 'string') urls.push(parsed.webhook_url);
    } catch {
      // Not JSON: the server reads no options from a body it cannot parse.
    }
  }
  return urls.filter((url) => !isHarmlessWebhookTarget(url));
}

/** True when a server with private webhooks refused could never call the URL: the check refuses it, or it cannot resolve. */
export function isHarmlessWebhookTarget(url: string): boolean {
  const checked = checkWebhookUrl(url, { allowPrivate: false });
  return !checked.ok || checked.value.hostname.endsWith('.invalid');
}

export interface Keys {
  a: string;
  b: string;
}

export function requestHeaders(c: BadInputCase, keys: Keys): Record<string, string> {
  const auth: Record<string, string> =
    c.auth === 'none'
      ? {}
      : c.auth === 'a-bearer-b-x-api-key'
        ? { authorization: `Bearer ${keys.a}`, 'x-api-key': keys.b }
        : { authorization: `Bearer ${c.auth === 'wrong' ? 'key-wrong-00000000000000000000' : keys[c.auth]}` };
  return { ...auth, ...c.headers };
}

export function caseUrl(baseUrl: string, c: BadInputCase): string {
  const query = c.query ? `?${new URLSearchParams(c.query).toString()}` : '';
  return `${baseUrl}${c.path}${query}`;
}

export async function sendCase(baseUrl: string, c: BadInputCase, keys: Keys): Promise<Response> {
  const body = caseBody(c);
  const init: RequestInit & { duplex?: 'half' } = { method: c.method, headers: requestHeaders(c, keys) };
  if (body && c.chunked) {
    // A stream has no known length: the server sees chunked transfer encoding and must count bytes itself.
    const chunkSize = 16 * 1024;
    let offset = 0;
    init.body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= body.length) return controller.close();
        controller.enqueue(body.subarray(offset, offset + chunkSize));
        offset += chunkSize;
      },
    });
    init.duplex = 'half';
  } else if (body) {
    init.body = new Uint8Array(body);
  }
  return fetch(caseUrl(baseUrl, c), init);
}

/** Writes the request head and the first `abortAfterBytes` body bytes on a raw socket, then drops the connection. */
export async function sendAndAbort(baseUrl: string, c: BadInputCase, keys: Keys): Promise<void> {
  const url = new URL(caseUrl(baseUrl, c));
  const headers = { host: url.host, ...requestHeaders(c, keys) };
  const head = `${c.method} ${url.pathname}${url.search} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  const body = caseBody(c) ?? Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(head);
      socket.write(body.subarray(0, c.abortAfterBytes));
      setTimeout(() => socket.destroy(), 200);
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}
