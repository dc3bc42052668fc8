// One trace per batch across processes: an API process and a Temporal worker process, both exporting OTLP/HTTP to a
// loopback receiver. The submit request's span in the API is the root of the trace that holds the workflow, every
// segment and its sink write, and the webhook delivery, all made in the worker process.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startTemporal, stopAllBackends, type TemporalBackend } from '../support/containers.ts';
import { tempDir } from '../support/local-context.ts';
import { otlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { startWorkerProcess } from '../support/temporal.ts';
import { webhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { commonEnv, testKeys } from './http.suite.ts';

let temporal: TemporalBackend;
let receiver: OtlpReceiver;
let hooks: WebhookReceiver;
let api: ServerProcess;
let worker: ServerProcess;
const dir = tempDir();
const keys = testKeys();
const webhookSecret = 'whsec_' + randomBytes(32).toString('base64');

beforeAll(async () => {
  [temporal, receiver, hooks] = await Promise.all([startTemporal(), otlpReceiver(), webhookReceiver(webhookSecret)]);
  const env = {
    ...commonEnv(keys),
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_ORCHESTRATOR: 'temporal',
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace,
    TEMPORAL_TASK_QUEUE: uniqueId('traced'),
    BATCHMEM_SEGMENT_MAX_ITEMS: '500',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    // Export within a fraction of a second, so the test need not wait for the default 5 s batches.
    OTEL_BSP_SCHEDULE_DELAY: '200',
  };
  api = await serverProcess(env);
  await api.start();
  worker = await startWorkerProcess(env, 'traced-worker');
});
afterAll(async () => {
  await Promise.allSettled([api?.stop(), worker?.stop()]);
  await Promise.allSettled([receiver?.close(), hooks?.close()]);
  dir.remove();
  await stopAllBackends();
});
printLogsOnFailure(() => [temporal]);

async function waitForSpans(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      const names = [...new Set(receiver.spans.map((s) => `${s.service}:${s.name}`))].join(', ');
      throw new Error(`no ${what} within ${timeoutMs} ms; spans received: ${names || 'none'}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The chain of spans from `span` up to its trace's root, following parentSpanId. */
function ancestry(span: ReceivedSpan, byId: Map<string, ReceivedSpan>): ReceivedSpan[] {
  const chain = [span];
  let current = span;
  while (current.parentSpanId && byId.has(current.parentSpanId)) {
    current = byId.get(current.parentSpanId)!;
    chain.push(current);
  }
  return chain;
}

describe('tracing across the API and worker processes', () => {
  it('puts the submit, the workflow, each segment with its sink write and the webhook in one trace', async () => {
    const client = apiClient(api.url, keys[0]!.key);
    const total = 2000;
    const query = `?batch_id=traced&webhook_url=${encodeURIComponent(hooks.url)}`;
    const submitted = await client.submitNdjson(ndjsonStream(total), query, { 'webhook-secret': webhookSecret });
    expect(submitted.status).toBe(202);
    const done = await client.waitForFinal('traced');
    expect(done.status).toBe('completed');
    expect((await hooks.waitFor('traced')).verified).toBe(true);

    await waitForSpans(() => receiver.spans.some((s) => s.service === 'batchmem-api' && s.name === 'POST /v1/memory/batch'), 'submit span');
    const submit = receiver.spans.find((s) => s.service === 'batchmem-api' && s.name === 'POST /v1/memory/batch')!;
    const inTrace = () => receiver.spans.filter((s) => s.traceId === submit.traceId);
    const segmentCount = total / 500;
    // The workflow's own span ends last (when the run completes, after the webhook) and reaches the exporter through
    // the worker's workflow sink: wait for it too.
    await waitForSpans(
      () =>
        inTrace().filter((s) => s.name === 'batchmem.sink.write').length >= segmentCount &&
        inTrace().some((s) => s.name === 'batchmem.webhook.deliver') &&
        inTrace().some((s) => s.name.startsWith('RunWorkflow:processBatch')),
      `${segmentCount} sink writes, a webhook delivery and the workflow run in trace ${submit.traceId}`,
    );
    expect(receiver.rejected).toEqual([]);

    const trace = inTrace();
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    expect(submit.parentSpanId).toBe('');
    const services = new Set(trace.map((s) => s.service));
    expect([...services].sort()).toEqual(['batchmem-api', 'batchmem-worker']);
    expect(trace.some((s) => s.service === 'batchmem-api' && s.name === 'batchmem.orchestrator.start')).toBe(true);
    expect(trace.some((s) => s.service === 'batchmem-worker' && s.name.startsWith('RunWorkflow:processBatch'))).toBe(true);

    const segments = trace.filter((s) => s.name === 'batchmem.segment');
    expect(new Set(segments.map((s) => s.attributes['batchmem.segment'])).size).toBe(segmentCount);
    for (const sink of trace.filter((s) => s.name === 'batchmem.sink.write')) {
      expect(sink.service).toBe('batchmem-worker');
      const chain = ancestry(sink, byId);
      // sink write -> segment -> activity (worker) -> ... -> workflow -> start (API) -> submit request (API): unbroken.
      expect(chain[1]?.name).toBe('batchmem.segment');
      expect(chain.at(-1)).toBe(submit);
    }
    const webhook = trace.find((s) => s.name === 'batchmem.webhook.deliver')!;
    expect(ancestry(webhook, byId).at(-1)).toBe(submit);

    // The API's log line for the submit request names the same trace.
    const requestLine = api
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; route?: string; method?: string; trace_id?: string })
      .find((line) => line.msg === 'request' && line.method === 'POST' && line.route === '/v1/memory/batch');
    expect(requestLine?.trace_id).toBe(submit.traceId);
    console.log(`[tracing] trace ${submit.traceId}: ${trace.length} spans (${[...services].join(', ')}), ${segments.length} segment spans`);
  });
});
