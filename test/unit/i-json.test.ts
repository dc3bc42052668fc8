// I-JSON at the edge (issue 15): the number rule on its own, and the round trip through the real HTTP app, the
// in-process runner and the segment codec: any valid item sent as JSON text, in a JSON body or as an NDJSON line, is
// accepted and stored equal in meaning (the same JSON text once re-serialised).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inProcessApp as inProcessAppOver, inProcessAuth } from '../support/in-process-app.ts';
import { batchKey } from '../../src/domain/batch.ts';
import { numberProblem, parseIJson, parseIJsonLine } from '../../src/app/http/i-json.ts';

describe('the I-JSON number rule', () => {
  it('keeps numbers a double reads back as written and refuses the others', () => {
    for (const kept of ['0', '-0', '1', '1.0', '1e2', '1E+2', '0.1', '0.25', '1e-7', '9007199254740992', '-9007199254740992', '1.7976931348623157e308', '5e-324', '123456789012345'])
      expect(numberProblem(kept), kept).toBeUndefined();
    for (const refused of ['1e400', '-1e400', '1e-400', '12345678901234567891', '9007199254740993', '-9007199254740993', '0.30000000000000001', '1.00000000000000001'])
      expect(numberProblem(refused), refused).toBeDefined();
  });

  it('gives the same verdict on the fast line path as on the token pass, for any JSON text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        const text = JSON.stringify(value);
        expect(parseIJsonLine(text).violation).toEqual(parseIJson(text).violation);
      }),
      { numRuns: 300 },
    );
    // The pre-screen sends texts that may hold a violation to the token pass, which finds it.
    for (const text of ['{"a":1,"a":2}', '{"a":"\\ud800"}', '{"a":1e400}', '{"a":{"b":[{"c":1,"c":1}]}}', '{"a":"\\":","a":1}',
      '{"a" : 1, "a"\t: 2}', '1e400', '[1e400]', '{"a":[0, 12345678901234567891]}', '{"a":-1.0e-400}', '{"x":"1234567890123456","a": 0.30000000000000001}'])
      expect(parseIJsonLine(text).violation, text).toBeDefined();
  });
});

const auth = inProcessAuth;
const inProcessApp = () => inProcessAppOver(1024 * 1024);

const forbiddenKey = /"(__proto__|constructor|prototype)":/;
/** Valid under the I-JSON rule: every number as JSON.stringify writes it is kept (integers within ±2^53). */
function numbersKept(value: unknown): boolean {
  if (typeof value === 'number') return numberProblem(JSON.stringify(value)) === undefined;
  if (value === null || typeof value !== 'object') return true;
  return Object.values(value).every(numbersKept);
}
const text = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter((s) => s.trim().length > 0);
const item = fc
  .record(
    {
      content: text,
      external_id: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
      metadata: fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.jsonValue({ maxDepth: 4, stringUnit: 'grapheme' }), { maxKeys: 6 }),
    },
    { requiredKeys: ['content'] },
  )
  .filter((memory) => numbersKept(memory) && !forbiddenKey.test(JSON.stringify(memory)) && Buffer.byteLength(JSON.stringify(memory.metadata ?? {})) < 16 * 1024);

describe('what is accepted is stored as sent', () => {
  it('stores any valid items, sent as JSON or NDJSON, equal in meaning to what was sent', async () => {
    const { app, sink, orchestrator } = inProcessApp();
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 4 }), fc.boolean(), async (generated, asNdjson) => {
          // External ids upsert across batches and must be unique within one (issue 16): prefix each with its run
          // and index so every run stores new memories, whatever text fast-check draws.
          run += 1;
          const items = generated.map((m, i) => (m.external_id === undefined ? m : { ...m, external_id: `r${run}-${i}-${m.external_id}` }));
          const body = asNdjson ? items.map((m) => JSON.stringify(m)).join('\n') + '\n' : JSON.stringify({ memories: items });
          const response = await app.request('/v1/memory/batch', {
            method: 'POST',
            headers: { ...auth, 'content-type': asNdjson ? 'application/x-ndjson' : 'application/json' },
            body,
          });
          expect(response.status, await response.clone().text()).toBe(202);
          const { batch_id: id } = (await response.json()) as { batch_id: string };
          for (let waited = 0; ; waited += 10) {
            const status = ((await (await app.request(`/v1/batch/${id}`, { headers: auth })).json()) as { status: string }).status;
            if (status === 'completed') break;
            if (waited > 10_000 || ['failed', 'cancelled', 'expired'].includes(status)) throw new Error(`batch ${id} ended ${status}`);
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          const stored = [...sink.memories.values()].filter((m) => m.batchKey === batchKey('org-a', id)).sort((a, b) => a.index - b.index);
          expect(stored.map((m) => JSON.stringify({ content: m.content, external_id: m.externalId ?? undefined, metadata: m.metadata ?? undefined }))).toEqual(
            items.map((m) => JSON.stringify({ content: m.content, external_id: m.external_id, metadata: m.metadata })),
          );
        }),
        { numRuns: 200 },
      );
    } finally {
      await orchestrator.close();
    }
  }, 60_000);
});
