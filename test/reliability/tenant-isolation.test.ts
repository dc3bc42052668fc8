// Tenant isolation under concurrency, on embedded defaults: two tenants submit at once, some batches under the same
// ids, while each keeps trying to see, list, cancel, stream and read the results of the other's batches.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient, type BatchJson, ndjsonStream } from '../support/api-client.ts';
import { memoryOrganizations, serverErrorCounts, storedMemories } from '../support/data-folder.ts';
import { tempDir } from '../support/local-context.ts';
import { expectNoSecrets, sleep, webhookSecretParts } from '../support/reliability.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const perTenant = 6;
const memoriesPerBatch = 3000;

interface Tenant {
  name: 'a' | 'b';
  organization: string;
  api: ApiClient;
  receiver: WebhookReceiver;
  secret: string;
  /** Ids both tenants use, each for its own batch. */
  shared: string[];
  /** Ids only this tenant uses. */
  own: string[];
  generatedSecret?: string;
}

describe('tenant isolation: two tenants submitting at once', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_SEGMENT_MAX_ITEMS: '250' });
    await server.start();
    const tenant = async (name: 'a' | 'b', index: number): Promise<Tenant> => {
      const secret = 'whsec_' + randomBytes(32).toString('base64');
      return {
        name,
        organization: keys[index]!.organization,
        api: apiClient(server.url, keys[index]!.key),
        receiver: await webhookReceiver(secret),
        secret,
        shared: Array.from({ length: perTenant }, (_, i) => `shared-${i}`),
        own: Array.from({ length: perTenant }, (_, i) => `only-${name}-${i}`),
      };
    };
    [a, b] = await Promise.all([tenant('a', 0), tenant('b', 1)]);
  });
  afterAll(async () => {
    await server?.stop();
    await a?.receiver.close();
    await b?.receiver.close();
    dir.remove();
  });

  async function submitAll(t: Tenant): Promise<void> {
    const make = (i: number) => ({ content: `tenant ${t.name} private memory ${i}`, external_id: `${t.name}-${i}` });
    await Promise.all(
      [...t.shared, ...t.own].map(async (id) => {
        const response = await t.api.submitNdjson(ndjsonStream(memoriesPerBatch, make), `?batch_id=${id}&webhook_url=${encodeURIComponent(t.receiver.url)}`, {
          'webhook-secret': t.secret,
        });
        expect(response.status, `${t.name} submits ${id}`).toBe(202);
      }),
    );
    // One batch whose secret the server generates: shown once, to its owner only.
    const generated = await t.api.submitJson({ memories: [make(0)], batch_id: `generated-${t.name}`, webhook_url: t.receiver.url });
    expect(generated.status).toBe(202);
    t.generatedSecret = ((await generated.json()) as BatchJson).webhook_secret;
    expect(t.generatedSecret).toMatch(/^whsec_/);
  }

  /** Until `done` resolves: every read, stream, list and cancel of the other tenant's batches must come back empty-handed. */
  async function probe(self: Tenant, other: Tenant, done: Promise<unknown>): Promise<number> {
    let finished = false;
    void done.finally(() => (finished = true));
    let probes = 0;
    while (!finished) {
      for (const id of other.own) {
        for (const path of ['', '/results', '/errors', '/events']) {
          const response = await self.api.request(`/v1/batch/${id}${path}`);
          expect(response.status, `${self.name} reads ${id}${path}`).toBe(404);
          expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
          await response.body?.cancel();
          probes += 1;
        }
        const cancel = await self.api.request(`/v1/batch/${id}/cancel`, { method: 'POST' });
        expect(cancel.status, `${self.name} cancels ${id}`).toBe(404);
        await cancel.body?.cancel();
        probes += 1;
      }
      const listed = await self.api.all<{ id: string }>('/v1/batch');
      expect(listed.map((x) => x.id).filter((id) => other.own.includes(id) || id === `generated-${other.name}`)).toEqual([]);
      probes += 1;
      await sleep(20);
    }
    return probes;
  }

  it("keeps each tenant's batches, results, streams, webhooks and memories to itself", async () => {
    const submissions = Promise.all([submitAll(a), submitAll(b)]);
    const allDone = submissions.then(() =>
      Promise.all([a, b].flatMap((t) => [...t.shared, ...t.own, `generated-${t.name}`].map((id) => t.api.waitForFinal(id)))),
    );
    const [probesA, probesB] = await Promise.all([probe(a, b, allDone), probe(b, a, allDone), allDone]);
    // The probes ran while the batches did, not only after.
    expect(probesA + probesB).toBeGreaterThan(4 * perTenant * 5);
    console.log(`[isolation] ${probesA + probesB} cross-tenant reads, streams, lists and cancels while ${4 * perTenant + 2} batches ran: all refused`);

    for (const [self, other] of [[a, b], [b, a]] as const) {
      // Each batch is the owner's, completed, cancelled by nobody.
      for (const id of [...self.shared, ...self.own]) {
        const batch = await self.api.get(id);
        expect(batch.status).toBe('completed');
        expect(batch.request_counts.succeeded).toBe(memoriesPerBatch);
        expect(storedMemories(dir.path, self.organization, id)).toEqual({ rows: memoriesPerBatch, distinctIndexes: memoriesPerBatch, distinctIds: memoriesPerBatch });
        expect(memoryOrganizations(dir.path, self.organization, id)).toEqual([self.organization]);
      }
      // The same id names two batches, one per tenant, each with its own results and memory ids.
      for (const id of self.shared) {
        const mine = await self.api.all<{ external_id: string; memory_id: string }>(`/v1/batch/${id}/results`);
        const theirs = await other.api.all<{ external_id: string; memory_id: string }>(`/v1/batch/${id}/results`);
        expect(mine.every((r) => r.external_id.startsWith(`${self.name}-`))).toBe(true);
        const theirIds = new Set(theirs.map((r) => r.memory_id));
        expect(mine.some((r) => theirIds.has(r.memory_id))).toBe(false);
        const stream = await self.api.events(id);
        expect(stream.names.at(-1)).toBe('done');
        expect(stream.last?.request_counts.total).toBe(memoriesPerBatch);
      }
      // The list holds exactly the owner's batches.
      const listed = (await self.api.all<{ id: string }>('/v1/batch')).map((x) => x.id).sort();
      expect(listed).toEqual([...self.shared, ...self.own, `generated-${self.name}`].sort());
      const completed = (await self.api.all<{ id: string }>('/v1/batch?status=completed')).map((x) => x.id);
      expect(completed.filter((id) => id.startsWith(`only-${other.name}`))).toEqual([]);
      // Each webhook went to the owner's receiver, signed with the owner's secret, for the owner's batches only.
      for (const id of [...self.shared, ...self.own]) await self.receiver.waitFor(id);
      const delivered = new Set(self.receiver.deliveries.map((d) => d.payload.data.id));
      // (The batch with a generated secret is signed with that secret, which the receiver does not hold.)
      expect(self.receiver.deliveries.filter((d) => !d.payload.data.id.startsWith('generated-')).every((d) => d.verified)).toBe(true);
      for (const id of other.own) expect(delivered.has(id)).toBe(false);
      for (const d of self.receiver.deliveries.filter((x) => self.shared.includes(x.payload.data.id))) {
        expect(d.payload.data.request_counts.total).toBe(memoriesPerBatch);
      }
    }

    // The same Idempotency-Key in two organizations makes two batches; a repeat returns the owner's.
    const keyed = async (t: Tenant) => (await (await t.api.submitJson({ memories: [{ content: t.name }] }, { 'idempotency-key': 'same-key' })).json()) as BatchJson;
    const [firstA, firstB] = await Promise.all([keyed(a), keyed(b)]);
    expect(firstA.id).not.toBe(firstB.id);
    expect((await keyed(a)).id).toBe(firstA.id);
    expect((await b.api.request(`/v1/batch/${firstA.id}`)).status).toBe(404);

    // Secrets: never in a response after the first, nor in the output or metrics.
    const secrets = [...keys.map((k) => k.key), ...[a, b].flatMap((t) => [...webhookSecretParts(t.secret), ...webhookSecretParts(t.generatedSecret!)])];
    for (const t of [a, b]) {
      const shown = JSON.stringify(await t.api.get(`generated-${t.name}`));
      expectNoSecrets(shown, secrets);
    }
    expectNoSecrets(server.output(), secrets);
    expectNoSecrets(await (await fetch(`${server.url}/metrics`)).text(), secrets);
    expect(await serverErrorCounts(server.url)).toEqual({});
  });
});
