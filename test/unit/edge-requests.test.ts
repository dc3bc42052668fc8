// Nothing the client says is ignored (issue 15): compressed bodies are read decoded, query parameters the routes
// declare (and the flags Papr's SDKs send) keep working, and a body that is not UTF-8 is placed exactly.
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inProcessApp as inProcessAppOver, inProcessAuth } from '../support/in-process-app.ts';
import { firstInvalidUtf8, maxItemLineBytes } from '../../src/app/http/body.ts';
import { defaultSettings } from '../../src/app/services.ts';

const auth = inProcessAuth;
const inProcessApp = () => inProcessAppOver(64 * 1024);

async function untilFinal(app: ReturnType<typeof inProcessApp>['app'], id: string) {
  for (let waited = 0; waited < 10_000; waited += 10) {
    const batch = (await (await app.request(`/v1/batch/${id}`, { headers: auth })).json()) as { status: string; request_counts: { succeeded: number } };
    if (batch.status !== 'pending' && batch.status !== 'processing') return batch;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`batch ${id} did not finish`);
}

describe('NDJSON bounds', () => {
  it('refuses a line longer than any valid memory (413 naming the line) before buffering more of it', async () => {
    const { app, orchestrator } = inProcessApp();
    try {
      const limit = maxItemLineBytes(defaultSettings.memoryLimits);
      // Compressed, so the 8 MiB line costs the client a few KiB; it was buffered up to 64 MiB before.
      const line = Buffer.concat([Buffer.from('{"content":"ok"}\n{"content":"'), Buffer.alloc(8 * 1024 * 1024, 'a')]);
      const response = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
        body: new Uint8Array(gzipSync(line, { level: 9 })),
      });
      expect(response.status).toBe(413);
      expect(((await response.json()) as { detail: string }).detail).toBe(`line 2 is longer than ${limit} bytes, more than any valid memory needs`);
    } finally {
      await orchestrator.close();
    }
  });

  it('accepts a memory at every limit at once, written with escapes, under the line limit', async () => {
    const { app, orchestrator } = inProcessApp();
    try {
      const limits = defaultSettings.memoryLimits;
      // Every content byte a control character: six bytes each on the line.
      const content = 'x' + '\u0001'.repeat(limits.maxContentBytes - 1);
      const metadata = { note: '\u0002'.repeat(Math.floor(limits.maxMetadataBytes / 6) - 10) };
      const text = JSON.stringify({ content, metadata }) + '\n';
      expect(text.length).toBeGreaterThan(6 * limits.maxContentBytes);
      expect(text.length).toBeLessThan(maxItemLineBytes(limits));
      const response = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-ndjson' },
        body: text,
      });
      expect(response.status, await response.clone().text()).toBe(202);
    } finally {
      await orchestrator.close();
    }
  });
});

describe('compressed request bodies', () => {
  it.each([
    ['gzip', gzipSync],
    ['zstd', zstdCompressSync],
  ] as const)('a %s body (JSON and NDJSON) is decoded, accepted and stored as sent', async (coding, compress) => {
    const { app, sink, orchestrator } = inProcessApp();
    try {
      const json = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'content-encoding': coding },
        body: new Uint8Array(compress(Buffer.from(JSON.stringify({ memories: [{ content: 'café, compressed' }, { content: 'two' }] })))),
      });
      expect(json.status, await json.clone().text()).toBe(202);
      const ndjson = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-ndjson', 'content-encoding': coding.toUpperCase() },
        body: new Uint8Array(compress(Buffer.from('{"content":"line one"}\n{"content":"line two"}\n'))),
      });
      expect(ndjson.status, await ndjson.clone().text()).toBe(202);
      for (const response of [json, ndjson]) expect((await untilFinal(app, ((await response.json()) as { id: string }).id)).request_counts.succeeded).toBe(2);
      expect([...sink.memories.values()].map((m) => m.content).sort()).toEqual(['café, compressed', 'line one', 'line two', 'two']);
    } finally {
      await orchestrator.close();
    }
  });

  it('limits the decoded bytes: 1 KiB of gzip expanding past the JSON body limit is 413', async () => {
    const { app, orchestrator } = inProcessApp();
    try {
      const bomb = gzipSync(Buffer.concat([Buffer.from('{"memories":['), Buffer.alloc(4 * 1024 * 1024, ' '), Buffer.from('{"content":"x"}]}')]), { level: 9 });
      expect(bomb.byteLength).toBeLessThan(8 * 1024);
      const response = await app.request('/v1/memory/batch', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: new Uint8Array(bomb),
      });
      expect(response.status).toBe(413);
    } finally {
      await orchestrator.close();
    }
  });
});

describe('query parameters', () => {
  it("accepts every parameter the routes declare, and Papr's flags on submit and single add", async () => {
    const { app, orchestrator } = inProcessApp();
    try {
      const flags = 'skip_background_processing=true&enable_holographic=false&frequency_schema_id=cosqa';
      const submit = await app.request(`/v1/memory/batch?${flags}&validate_only=false&completion_window=1h&metadata[job]=x`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-ndjson' },
        body: '{"content":"one"}\n',
      });
      expect(submit.status, await submit.clone().text()).toBe(202);
      const { id } = (await submit.json()) as { id: string };
      const single = await app.request(`/v1/memory?${flags}&format=json`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"content":"single"}' });
      expect([200, 202]).toContain(single.status);
      // The dashboard's and the CLI's own requests.
      for (const path of ['/v1/batch?limit=20&status=completed', '/v1/batch?metadata[job]=x&cursor=', `/v1/batch/${id}/errors?limit=50`, `/v1/batch/${id}/results?limit=5`]) {
        const response = await app.request(path, { headers: auth });
        expect(response.status, `${path}: ${await response.clone().text()}`).not.toBe(400);
      }
      await untilFinal(app, id);
      expect((await app.request(`/v1/batch/${id}/results.ndjson?from_index=0`, { headers: auth })).status).toBe(200);
      const unknown = await app.request(`/v1/batch/${id}/results.ndjson?from=0&x=1`, { headers: auth });
      expect(unknown.status).toBe(400);
      const problem = (await unknown.json()) as { detail: string; errors: { path: string }[] };
      expect(problem.errors.map((e) => e.path)).toEqual(['from', 'x']);
    } finally {
      await orchestrator.close();
    }
  });
});

describe('UTF-8 positions', () => {
  it('finds the first byte that is not well-formed UTF-8', () => {
    const at = (bytes: number[], final = true) => firstInvalidUtf8(new Uint8Array(bytes), final);
    expect(at([0x61, 0xc3, 0xa9, 0x62])).toBe(-1);
    expect(at([0x61, 0xe9, 0x62])).toBe(1); // Latin-1 é
    expect(at([0xff, 0xfe, 0x7b, 0x00])).toBe(0); // UTF-16 LE byte-order mark
    expect(at([0x61, 0xc0, 0xaf])).toBe(1); // overlong
    expect(at([0x61, 0xed, 0xa0, 0x80])).toBe(1); // an encoded surrogate
    expect(at([0x61, 0xf0, 0x9f, 0x98])).toBe(1); // cut at the end
    expect(at([0x61, 0xf0, 0x9f, 0x98], false)).toBe(-1);
  });
});
