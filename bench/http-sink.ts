// 7. The HTTP pipeline sink (BATCHMEM_SINK=http): end-to-end throughput of `batchmem serve` forwarding every memory to
// a loopback NDJSON receiver (submitted with `invalid_items: record`, so delivery overlaps the upload), divided by that receiver's raw accept rate measured in the same run (a plain client
// sending the same memories, pre-built and signed, in the same chunks and with the same concurrency).
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { WireFormat, type WireRequest } from '../src/adapters/http/formats.ts';
import { toMemoryRecord } from '../src/domain/memory.ts';
import { sinkReceiver, type SinkReceiver } from '../test/support/sink-receiver.ts';
import { corpusMemory } from './corpus.ts';
import { embeddedServer, ndjsonChunks, streamOf, waitForFinal } from './embedded.ts';
import { cpuSince, type ProcessCpu } from './server.ts';

type Log = (line: string) => void;

export interface HttpSinkRun {
  /** Raw: the receiver fed by a plain client. */
  rawMemoriesPerSecond: number;
  /** End to end: submit request start to `completed`, through `batchmem serve` with BATCHMEM_SINK=http. */
  endToEndMemoriesPerSecond: number;
  endToEndSeconds: number;
  /** 202 to `completed`: the sink's delivery alone, without the upload. */
  processSeconds: number;
  ratio: number;
  /** How far delivery overlapped the upload: memories the receiver held at the 202, and the first one's arrival (s after the POST). */
  deliveredAtAccept?: number;
  firstDeliverySeconds?: number;
  /** The server's CPU from the POST to `completed`, in all and by thread. */
  cpu?: ProcessCpu;
}

export interface HttpSinkReceiverResult {
  /** What the receiver does per request before answering: nothing, or a fixed service time like a remote pipeline's. */
  serviceMs: number;
  runs: HttpSinkRun[];
  rawMemoriesPerSecond: number;
  endToEndMemoriesPerSecond: number;
  /** Median end-to-end rate divided by median raw rate. */
  ratio: number;
  ratioRange: [number, number];
  /** Median delivery rate after the 202 (memories not yet delivered at the 202, over 202 to completed) divided by median raw rate. */
  processOnlyRatio: number;
  /**
   * The most the ratio could be: end to end cannot be faster than the upload alone (POST to 202), so this is the
   * median upload rate divided by the median raw rate. A receiver faster than batchmem's own ingest caps the ratio here.
   */
  uploadCeiling?: number;
}

export interface HttpSinkResult {
  memories: number;
  chunkSize: number;
  concurrency: number;
  repeats: number;
  receivers: HttpSinkReceiverResult[];
  target: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** The receiver's raw accept rate: pre-built signed requests, `concurrency` in flight, back to back. */
async function rawAcceptRate(receiver: SinkReceiver, requests: WireRequest[], memories: number, concurrency: number): Promise<number> {
  const agent = new Agent({ connections: concurrency });
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests.length) {
        const wire = requests[next++]!;
        const response = await request(`${receiver.url}/ingest`, { method: 'POST', headers: wire.headers, body: wire.body, dispatcher: agent });
        await response.body.dump();
        if (response.statusCode !== 200) throw new Error(`the receiver answered ${response.statusCode}`);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await agent.close();
  return memories / seconds;
}

async function endToEnd(
  receiver: SinkReceiver,
  secret: string,
  memories: number,
  chunkSize: number,
  concurrency: number,
): Promise<{ seconds: number; processSeconds: number; deliveredAtAccept: number; firstDeliverySeconds?: number; cpu: ProcessCpu }> {
  const server = await embeddedServer({
    BATCHMEM_SINK: 'http',
    BATCHMEM_SINK_URL: `${receiver.url}/ingest`,
    BATCHMEM_SINK_FORMAT: 'ndjson',
    BATCHMEM_SINK_SECRET: secret,
    BATCHMEM_SINK_CHUNK: String(chunkSize),
    BATCHMEM_SINK_CONCURRENCY: String(concurrency),
  });
  try {
    const chunks = ndjsonChunks(memories);
    const cpuBefore = server.proc.cpu();
    const start = performance.now();
    let firstDeliverySeconds: number | undefined;
    const watch = setInterval(() => {
      if (firstDeliverySeconds === undefined && receiver.stored.size > 0) firstDeliverySeconds = (performance.now() - start) / 1000;
    }, 20);
    // invalid_items: record, so that delivery starts with the first stored segment and overlaps the upload.
    const response = await server.api.submitNdjson(streamOf(chunks), '?invalid_items=record');
    const deliveredAtAccept = receiver.stored.size;
    if (response.status !== 202) throw new Error(`submit answered ${response.status}: ${(await response.text()).slice(0, 500)}`);
    const { id } = (await response.json()) as { id: string };
    const acceptedAt = performance.now();
    const done = await waitForFinal(server.api, id, 30 * 60_000);
    const seconds = (performance.now() - start) / 1000;
    const processSeconds = (performance.now() - acceptedAt) / 1000;
    clearInterval(watch);
    const cpu = cpuSince(cpuBefore, server.proc.cpu());
    if (done.status !== 'completed' || done.request_counts.succeeded !== memories) {
      throw new Error(`batch ended ${done.status} with ${JSON.stringify(done.request_counts)}`);
    }
    return { seconds, processSeconds, deliveredAtAccept, firstDeliverySeconds, cpu };
  } finally {
    await server.close();
  }
}

export async function runHttpSink(options: {
  memories: number;
  repeats: number;
  serviceTimesMs: number[];
  log: Log;
}): Promise<HttpSinkResult> {
  // The product's defaults for NDJSON: 50 memories a request, 8 requests in flight.
  const chunkSize = 50;
  const concurrency = 8;
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const wire = new WireFormat({ format: 'ndjson', secret });
  const tenant = { organization: 'bench', namespace: 'bench', user: 'bench', workspace: 'bench' };
  const receivers: HttpSinkReceiverResult[] = [];
  for (const serviceMs of options.serviceTimesMs) {
    const runs: HttpSinkRun[] = [];
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      // A fresh receiver for each measurement, so neither pays for the other's stored memories.
      const rawReceiver = await sinkReceiver({ secret, plan: serviceMs > 0 ? () => ({ kind: 'slow', delayMs: serviceMs }) : undefined });
      const records = Array.from({ length: options.memories }, (_, i) => toMemoryRecord(`bench:raw:${repeat}`, tenant, i, corpusMemory(i)));
      const requests: WireRequest[] = [];
      for (let start = 0; start < records.length; start += chunkSize) {
        const built = wire.build(records.slice(start, start + chunkSize), false);
        requests.push({ ...built, headers: wire.headersAt(built, new Date()) });
      }
      const raw = await rawAcceptRate(rawReceiver, requests, options.memories, concurrency);
      await rawReceiver.close();
      const e2eReceiver = await sinkReceiver({ secret, plan: serviceMs > 0 ? () => ({ kind: 'slow', delayMs: serviceMs }) : undefined });
      const { seconds, processSeconds, deliveredAtAccept, firstDeliverySeconds, cpu } = await endToEnd(e2eReceiver, secret, options.memories, chunkSize, concurrency);
      const delivered = e2eReceiver.stored.size;
      await e2eReceiver.close();
      if (delivered !== options.memories) throw new Error(`the receiver holds ${delivered} of ${options.memories} memories`);
      const endToEndRate = options.memories / seconds;
      runs.push({
        rawMemoriesPerSecond: raw,
        endToEndMemoriesPerSecond: endToEndRate,
        endToEndSeconds: seconds,
        processSeconds,
        ratio: endToEndRate / raw,
        deliveredAtAccept,
        firstDeliverySeconds,
        cpu,
      });
      options.log(
        `  http sink, receiver service time ${serviceMs} ms: raw ${Math.round(raw)}/s, end to end ${Math.round(endToEndRate)}/s ` +
          `(${seconds.toFixed(1)} s, of which after the 202 ${processSeconds.toFixed(1)} s; ${deliveredAtAccept} delivered by the 202, the first at ` +
          `${firstDeliverySeconds?.toFixed(1)} s), ratio ${(endToEndRate / raw).toFixed(2)}; server CPU ${cpu.totalSeconds.toFixed(1)} s ` +
          `(${Object.entries(cpu.byThread).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})`,
      );
    }
    const rawRate = median(runs.map((r) => r.rawMemoriesPerSecond));
    const e2eRate = median(runs.map((r) => r.endToEndMemoriesPerSecond));
    receivers.push({
      serviceMs,
      runs,
      rawMemoriesPerSecond: rawRate,
      endToEndMemoriesPerSecond: e2eRate,
      ratio: e2eRate / rawRate,
      ratioRange: [Math.min(...runs.map((r) => r.ratio)), Math.max(...runs.map((r) => r.ratio))],
      processOnlyRatio: median(runs.map((r) => (options.memories - (r.deliveredAtAccept ?? 0)) / r.processSeconds)) / rawRate,
      uploadCeiling: median(runs.map((r) => options.memories / (r.endToEndSeconds - r.processSeconds))) / rawRate,
    });
  }
  return { memories: options.memories, chunkSize, concurrency, repeats: options.repeats, receivers, target: 0.8 };
}
