// The official Papr SDKs, unchanged, against a real batchmem server process: npm's @papr/memory and PyPI's
// papr-memory each add a batch with every field they can send, read its status, add one memory, have their webhook
// signed with a plain and a whsec_ secret, and retry a submit whose answer came too late, leaving one batch.
import { randomBytes } from 'node:crypto';
import type { AddMemory, MemoryAddBatchParams } from '@papr/memory/resources/memory';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api-client.ts';
import { holdingProxy, jsCall, jsClient, pyCall, type SdkOutcome } from '../support/papr-sdks.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, type E2eBackend } from './http.suite.ts';

type Sdk = 'js' | 'py';

/** The per-memory fields of Papr's AddMemory, every one set. */
function fullMemory(sdk: Sdk, tag: string) {
  return {
    // Typed by the SDK's own declarations, so a field it does not know fails to compile.
    content: `${sdk} ${tag}: meeting notes from the planning session`,
    type: 'text',
    metadata: { topics: ['planning'], customMetadata: { sdk } },
    context: [
      { role: 'user', content: 'what did we decide?' },
      { role: 'assistant', content: 'to ship in May' },
    ],
    relationships_json: [{ relation_type: 'follows', related_item_id: 'mem_previous', related_item_type: 'TextMemoryItem', metadata: {} }],
    external_user_id: `${sdk}-alice`,
    user_id: `${sdk}-parse-user`,
    namespace_id: 'ns',
    organization_id: 'org-papr',
    graph_generation: { mode: 'auto' as const, auto: { schema_id: 'sch_meetings' } },
    link_to: ['Task:title', 'Person:email'],
    memory_policy: { mode: 'auto' as const, consent: 'explicit' as const, risk: 'none' as const },
    policy: { graph: { link_to: 'Project:name' } },
  } satisfies AddMemory & { content: string; metadata: object; context: object[] };
}

/** The batch-level fields of Papr's add_batch, every one set (the webhook is added per call). */
function batchFields(sdk: Sdk) {
  return {
    batch_size: 10,
    external_user_id: `${sdk}-batch-user`,
    user_id: `${sdk}-batch-parse-user`,
    namespace_id: 'ns',
    organization_id: 'org-papr',
    graph_generation: { mode: 'manual' as const, manual: { nodes: [] } },
    link_to: 'Project:name',
    memory_policy: { mode: 'manual' as const },
    policy: { graph: { mode: 'manual' } },
  } satisfies Pick<
    MemoryAddBatchParams,
    'batch_size' | 'external_user_id' | 'user_id' | 'namespace_id' | 'organization_id' | 'graph_generation' | 'link_to' | 'memory_policy' | 'policy'
  >;
}

const queryFlags = { skip_background_processing: true, enable_holographic: false, frequency_schema_id: 'cosqa' };

export function paprSdkSuite(name: string, openBackend: () => Promise<E2eBackend>): void {
  describe(`Papr SDKs unchanged against batchmem: ${name}`, () => {
    const key = `key-papr-${randomBytes(16).toString('hex')}`;
    const retryKeys = { js: `key-retry-js-${randomBytes(8).toString('hex')}`, py: `key-retry-py-${randomBytes(8).toString('hex')}` };
    const plainSecret = `papr-plain-${randomBytes(12).toString('hex')}`;
    const whsecSecret = 'whsec_' + randomBytes(32).toString('base64');
    let backend: E2eBackend;
    let server: ServerProcess;
    let plainReceiver: WebhookReceiver;
    let whsecReceiver: WebhookReceiver;

    beforeAll(async () => {
      backend = await openBackend();
      plainReceiver = await webhookReceiver(plainSecret);
      whsecReceiver = await webhookReceiver(whsecSecret);
      const keys = [
        { key, organization: 'org-papr', namespace: 'ns', user: 'papr-user', workspace: 'ws' },
        { key: retryKeys.js, organization: 'org-retry-js', namespace: 'ns', user: 'u', workspace: 'ws' },
        { key: retryKeys.py, organization: 'org-retry-py', namespace: 'ns', user: 'u', workspace: 'ws' },
      ];
      const env = { ...commonEnv(keys), ...backend.env };
      await backend.start?.(env);
      server = await serverProcess(env);
      await server.start();
    }, 300_000);

    afterAll(async () => {
      await server?.stop();
      await plainReceiver?.close();
      await whsecReceiver?.close();
      await backend?.close();
      // Secrets and keys never reach the log.
      const output = server?.output() ?? '';
      expect(output).not.toContain(plainSecret);
      expect(output).not.toContain(whsecSecret);
      expect(output).not.toContain(key);
    });

    const options = () => ({ baseURL: server.url, apiKey: key });

    async function addBatch(sdk: Sdk, tag: string, secret: string, receiver: WebhookReceiver): Promise<SdkOutcome> {
      const memories = [fullMemory(sdk, tag), { content: `${sdk} ${tag}: a follow-up with nothing else set`, metadata: null }];
      const webhook = { webhook_url: receiver.url, webhook_secret: secret };
      if (sdk === 'js') {
        return jsCall(() => jsClient(options()).memory.addBatch({ memories, ...batchFields(sdk), ...webhook, ...queryFlags }));
      }
      // The Python SDK sends null for an argument set to None.
      return pyCall(options(), 'add_batch', [], { memories, ...batchFields(sdk), ...webhook, ...queryFlags });
    }

    async function batchStatus(sdk: Sdk, batchId: string): Promise<SdkOutcome> {
      if (sdk === 'js') return jsCall(() => jsClient(options()).memory.retrieveBatchStatus(batchId));
      return pyCall(options(), 'retrieve_batch_status', [batchId]);
    }

    async function waitForStatus(sdk: Sdk, batchId: string, status: string): Promise<Record<string, any>> {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const outcome = await batchStatus(sdk, batchId);
        if (!outcome.ok) throw new Error(`status call failed: ${JSON.stringify(outcome)}`);
        if (outcome.parsed.status === status) return outcome.parsed;
        if (Date.now() > deadline) throw new Error(`batch ${batchId} is ${outcome.parsed.status}, not ${status}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }

    describe.each<Sdk>(['js', 'py'])('%s SDK', (sdk) => {
      it.each([
        ['a plain secret', 'plain'],
        ['a whsec_ secret', 'whsec'],
      ] as const)(
        'adds a batch with every field and %s; the status call, the results and the webhook carry it through',
        async (_label, kind) => {
          const secret = kind === 'plain' ? plainSecret : whsecSecret;
          const receiver = kind === 'plain' ? plainReceiver : whsecReceiver;
          const added = await addBatch(sdk, kind, secret, receiver);
          expect(added, JSON.stringify(added)).toMatchObject({ ok: true });
          if (!added.ok) return;
          const batchId = added.parsed.batch_id as string;
          expect(batchId).toMatch(/^b_[0-9a-f]{32}$/);
          // The answer shows the batch as it stands when the answer is made: the processing thread may already have
          // stored its two memories (a race seen under load), and 200 means complete, with both.
          const answered = added.parsed as { code: number; total_processed: number; total_successful: number };
          expect(answered).toMatchObject({ total_failed: 0, errors: [] });
          expect([202, 200]).toContain(answered.code);
          if (answered.code === 200) expect(answered).toMatchObject({ total_processed: 2, total_successful: 2 });
          else expect(answered.total_processed).toBeLessThanOrEqual(2);

          const status = await waitForStatus(sdk, batchId, 'completed');
          expect(status).toMatchObject({ batch_id: batchId, code: 200, total_processed: 2, total_successful: 2, total_failed: 0, errors: [] });

          // What was stored: each memory's own Papr fields, the batch's as defaults under them.
          const results = await apiClient(server.url, key).all<Record<string, unknown>>(`/v1/batch/${batchId}/results`);
          const { content: _content, type: _type, metadata: _metadata, ...ownFields } = fullMemory(sdk, kind);
          const { batch_size: _hint, ...defaults } = batchFields(sdk);
          expect(results[0]).toMatchObject({ index: 0, status: 'succeeded', ...ownFields });
          expect(results[1]).toMatchObject({ index: 1, status: 'succeeded', ...defaults });

          const delivery = await receiver.waitFor(batchId);
          expect(delivery.verified).toBe(true); // standardwebhooks
          expect(delivery.paprVerified).toBe(true); // an HMAC-SHA256 of the body, computed by the receiver
          expect(delivery.event).toBe('batch.completed');
          expect(delivery.payload).toMatchObject({ batch_id: batchId, status: 'completed', total_memories: 2, successful_memories: 2, failed_memories: 0 });
          expect(delivery.bodyBytes).toBeLessThan(4096);
          expect(JSON.stringify(delivery.headers)).not.toContain(secret);
        },
        180_000,
      );

      it('adds one memory and gets it back in the add answer once stored', async () => {
        const memory = fullMemory(sdk, 'single');
        const outcome =
          sdk === 'js'
            ? await jsCall(() => jsClient(options()).memory.add({ ...memory, type: 'text' as const, skip_background_processing: true }))
            : await pyCall(options(), 'add', [], { ...memory, skip_background_processing: true });
        expect(outcome, JSON.stringify(outcome)).toMatchObject({ ok: true });
        if (!outcome.ok) return;
        expect(outcome.parsed).toMatchObject({ code: 200, status: 'success' });
        const item = outcome.parsed.data[0] as Record<string, string>;
        const memoryId = item.memoryId ?? item.memory_id;
        expect(memoryId).toMatch(/^mem_[0-9a-f]{32}$/);
        const results = await apiClient(server.url, key).all<Record<string, unknown>>(`/v1/batch/${outcome.parsed.batch_id}/results`);
        expect(results).toHaveLength(1);
        expect(results[0]).toMatchObject({ memory_id: memoryId, external_user_id: `${sdk}-alice`, context: memory.context });
      }, 60_000);

      it('retries a submit whose answer came after its timeout, and the retry answers the one batch made', async () => {
        // The first answer comes back 3 s after the client gave up; a loaded machine may make the client retry
        // more than once, but never store more than one batch.
        const timeoutMs = 3000;
        const holdMs = timeoutMs + 3000;
        const proxy = await holdingProxy(server.url, (method, path) => method === 'POST' && path.startsWith('/v1/memory/batch'), holdMs);
        try {
          const retryOptions = { baseURL: proxy.url, apiKey: retryKeys[sdk], timeoutMs, maxRetries: 2 };
          const memories = [{ content: `${sdk} retried submit`, external_user_id: 'retry-user' }];
          const outcome =
            sdk === 'js'
              ? await jsCall(() => jsClient(retryOptions).memory.addBatch({ memories, batch_size: 1 }))
              : await pyCall(retryOptions, 'add_batch', [], { memories, batch_size: 1, webhook_url: null });
          expect(outcome, JSON.stringify(outcome)).toMatchObject({ ok: true });
          const submits = proxy.requests.filter((r) => r.method === 'POST');
          expect(submits.length).toBeGreaterThanOrEqual(2);
          expect(submits[0]!.held).toBe(true);
          const batches = await apiClient(server.url, retryKeys[sdk]).all<{ id: string }>('/v1/batch');
          expect(batches).toHaveLength(1);
          if (outcome.ok) expect(outcome.parsed.batch_id).toBe(batches[0]!.id);
        } finally {
          await proxy.close();
        }
      }, 60_000);
    });
  });
}
