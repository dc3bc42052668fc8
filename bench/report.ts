// Renders the benchmark results as the markdown that bench/results/latest.md and docs/benchmarks.md show.
import type { CompressionResult } from './compression.ts';
import type { CorpusStats } from './corpus.ts';
import type { LatencyResult, RssResult, ThroughputResult } from './embedded.ts';
import type { ProcessCpu } from './server.ts';
import type { FairnessResult } from './fairness.ts';
import type { HttpSinkResult } from './http-sink.ts';
import type { DesignName, DesignRun, TemporalResult } from './temporal/designs.ts';

export type Section<T> =
  | { status: 'measured'; seconds: number; result: T }
  | { status: 'skipped' | 'error'; reason: string };

export interface BenchResults {
  date: string;
  command: string;
  profile: 'quick' | 'full';
  machine: {
    cores: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    platform: string;
    loadAverageBefore: number[];
    loadAverageAfter: number[];
  };
  corpus: { seed: number; sample: CorpusStats };
  compression: Section<CompressionResult>;
  throughput: Section<ThroughputResult>;
  rss: Section<RssResult>;
  latency: Section<LatencyResult>;
  temporal: Section<TemporalResult>;
  /** Absent in results written before the HTTP sink existed. */
  httpSink?: Section<HttpSinkResult>;
  /** Absent in results written before the fairness benchmark existed. */
  fairness?: Section<FairnessResult>;
  seconds: number;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const mb = (bytes: number) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`);
const bytes = (n: number) => (n >= 1e6 ? mb(n) : n >= 1e4 ? `${(n / 1e3).toFixed(0)} kB` : `${int(n)} B`);
const x = (n: number, digits = 2) => `${n.toFixed(digits)}×`;
const met = (ok: boolean) => (ok ? 'met' : '**missed**');

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function notMeasured(section: { status: string; reason: string }): string {
  return `_Not measured: ${section.reason}._`;
}

function compression(section: Section<CompressionResult>): string {
  if (section.status !== 'measured') return notMeasured(section);
  const c = section.result;
  const rows = c.rows.map((r) => [
    `${r.codec} ${r.level}${r.isDefault ? ' **(default)**' : ''}${r.isBaseline ? ' (baseline)' : ''}`,
    r.ratio.toFixed(2),
    x(r.sizeVsBaseline),
    r.compressMBps.toFixed(1),
    x(r.speedVsBaseline),
    r.decompressMBps.toFixed(0),
  ]);
  const chosen = c.rows.find((r) => r.isDefault);
  const verdict = chosen
    ? `Default ${chosen.codec} ${chosen.level}: ${x(chosen.sizeVsBaseline)} the stored size of gzip 6 at ${x(chosen.speedVsBaseline)} its compression speed.`
    : '';
  return [
    `${int(c.memories)} memories cut as the product cuts them (at most ${int(c.segmentMaxItems)} items or ${mib(c.segmentMaxRawBytes)} a segment): ${c.segments} segments, ${mb(c.rawBytes)} of NDJSON. One thread, \`node:zlib\`; speeds are the fastest of ${c.rounds} interleaved passes (brotli 11 compresses once).`,
    '',
    table(['codec, level', 'ratio (raw/stored)', 'size vs gzip 6', 'compress MB/s', 'speed vs gzip 6', 'decompress MB/s'], rows),
    '',
    verdict,
  ].join('\n');
}

function throughput(section: Section<ThroughputResult>, temporal: Section<TemporalResult>): string {
  const rows: string[][] = [];
  const notes: string[] = [];
  if (section.status === 'measured') {
    const t = section.result;
    const e2e = t.endToEndRuns;
    rows.push([
      'embedded defaults (SQLite, files, in-process)',
      int(t.memories),
      int(t.endToEndMemoriesPerSecond),
      int(t.sinkMemoriesPerSecond),
      `**${t.ratio.toFixed(2)}** (${t.ratioRange[0].toFixed(2)}–${t.ratioRange[1].toFixed(2)})`,
      `≥ ${t.target}: ${met(t.ratio >= t.target)}`,
    ]);
    if (t.record) {
      const r = t.record;
      rows.push([
        'embedded defaults, `invalid_items: record` (processing overlaps the upload)',
        int(t.memories),
        int(r.memoriesPerSecond),
        int(t.sinkMemoriesPerSecond),
        `**${r.ratio.toFixed(2)}** (${r.ratioRange[0].toFixed(2)}–${r.ratioRange[1].toFixed(2)})`,
        `≥ ${r.target}: ${met(r.ratio >= r.target)}`,
      ]);
      notes.push(
        `With \`invalid_items: record\`, median of ${r.runs.length} runs: the upload takes ${median(r.runs.map((run) => run.submitSeconds)).toFixed(1)} s (POST until 202) and processing ends ${median(r.runs.map((run) => run.processSeconds)).toFixed(1)} s after it; segments are processed as they are stored.`,
      );
    }
    const split = cpuSplit(e2e, t.memories);
    if (split) {
      const sinkCpu = t.sinkRuns.map((r) => r.cpuSeconds).filter((v): v is number => v !== undefined);
      notes.push(
        `Where the CPU goes (\`reject\`, median of ${t.repeats} runs, the server's CPU from POST to \`completed\` per 1,000 memories): ${split}` +
          (sinkCpu.length ? `; the raw sink's writes take ${((median(sinkCpu) * 1000 * 1000) / t.memories).toFixed(0)} ms per 1,000 memories on one thread.` : '.'),
      );
    }
    notes.push(
      `Embedded, median of ${t.repeats} runs: submit (POST until 202: stream, validate, compress, store segments) ${median(e2e.map((r) => r.submitSeconds)).toFixed(1)} s, ` +
        `processing (202 until \`completed\`) ${median(e2e.map((r) => r.processSeconds)).toFixed(1)} s; the processing phase alone runs at ${t.processOnlyRatio.toFixed(2)} of the sink's raw rate.`,
    );
  } else {
    rows.push(['embedded defaults', '–', '–', '–', '–', notMeasured(section)]);
  }
  if (temporal.status === 'measured') {
    for (const t of temporal.result.throughput) {
      rows.push([t.label, int(t.memories), int(t.memoriesPerSecond), `${int(t.sink.memoriesPerSecond)} (${t.sinkLabel})`, `**${t.ratio.toFixed(2)}**`, `≥ 0.7: ${met(t.ratio >= 0.7)}`]);
    }
    for (const missing of temporal.result.throughputNotMeasured) {
      rows.push([missing.label, '–', '–', '–', '–', `_Not measured: ${missing.reason.replace(/\|/g, '/')}_`]);
    }
  } else {
    rows.push(['Temporal + S3 payloads + SQLite', '–', '–', '–', '–', notMeasured(temporal)]);
    rows.push(['Temporal + Parse + S3', '–', '–', '–', '–', notMeasured(temporal)]);
  }
  return [
    'Memories per second from the start of the submit request to `completed`, divided by the raw bulk-write rate of the same sink in the same run (`writeSegment` of records built beforehand, one call per segment of the product\'s size, back to back). The Temporal rows are one run each.',
    '',
    table(['stack', 'N', 'end to end /s', 'raw sink /s', 'ratio (range)', 'target'], rows),
    '',
    ...notes,
  ].join('\n');
}

function rss(section: Section<RssResult>): string {
  if (section.status !== 'measured') return notMeasured(section);
  const r = section.result;
  const rows = r.runs.map((run) => [
    int(run.memories),
    mb(run.ndjsonBytes),
    mib(run.idleRssBytes),
    `**${mib(run.peakRssBytes)}**`,
    mib(run.uploadMaxRssBytes),
    mib(run.processingMaxRssBytes),
    `${run.totalSeconds.toFixed(0)} s`,
    run.status,
    run.memories === r.targetAt ? `< ${mib(r.targetBytes)}: ${met(run.peakRssBytes < r.targetBytes)}` : '',
  ]);
  const largest = r.runs.at(-1);
  const note = largest && largest.memories < r.targetAt ? `The quick profile stops at ${int(largest.memories)}; \`--full\` runs ${int(r.targetAt)}.` : '';
  return [
    'Peak resident set (VmHWM from /proc) of the `batchmem serve` process (started through `bin/batchmem.js`, with its Node.js flags), fresh for each size, over the whole batch: NDJSON upload and processing.',
    '',
    table(['memories', 'NDJSON body', 'idle RSS', 'peak RSS (VmHWM)', 'max RSS during upload', 'max RSS while processing', 'time', 'status', 'target'], rows),
    ...(note ? ['', note] : []),
  ].join('\n');
}

function historyVsN(section: Section<TemporalResult>): string {
  if (section.status !== 'measured') return notMeasured(section);
  const runs = section.result.runs.filter((r) => r.design === 'batchmem');
  if (runs.length === 0) return '_No batchmem run on Temporal._';
  return table(
    ['memories', 'outcome', 'workflow input (largest of its runs)', 'runs (continue-as-new)', 'longest run: events', 'longest run: bytes'],
    runs.map((r) => [int(r.memories), r.outcome, `${int(r.inputBytes)} B`, String(r.runs), int(r.longestHistoryEvents), bytes(r.longestHistoryBytes)]),
  );
}

function designs(section: Section<TemporalResult>): string {
  if (section.status !== 'measured') return notMeasured(section);
  const t = section.result;
  const names: DesignName[] = ['naive', 'naive + external storage (S3)', 'batchmem'];
  const summary = names.map((name) => {
    const runs = t.runs.filter((r) => r.design === name);
    const best = runs.filter((r) => r.outcome === 'completed').at(-1);
    const failure = runs.find((r) => r.outcome !== 'completed');
    const tried = runs.at(-1)?.memories ?? 0;
    return [
      name,
      best ? int(best.memories) : 'none',
      failure ? `${int(failure.memories)}: ${failure.outcome}, ${shortReason(failure)}` : `none up to ${int(tried)} (largest tried)`,
      best ? bytes(best.inputBytes) : '–',
      best ? `${int(best.longestHistoryEvents)} events, ${bytes(best.longestHistoryBytes)}` : '–',
      best ? `${mib(best.workerPeakRssBytes)}${best.workerPeakIsPerBatch ? '' : ' (since start)'} (idle ${mib(best.workerIdleRssBytes)})` : '–',
      best ? `${best.secondsPer10k.toFixed(1)} s` : '–',
    ];
  });
  const detail = table(
    ['design', 'memories', 'outcome', 'workflow input', 'runs', 'longest history', 'worker peak RSS', 'time', 's per 10,000'],
    t.runs.map((r: DesignRun) => [
      r.design,
      int(r.memories),
      r.outcome,
      bytes(r.inputBytes),
      String(r.runs),
      r.runs ? `${int(r.longestHistoryEvents)} events, ${bytes(r.longestHistoryBytes)}` : '–',
      mib(r.workerPeakRssBytes),
      `${r.seconds.toFixed(1)} s`,
      r.outcome === 'completed' ? r.secondsPer10k.toFixed(1) : '–',
    ]),
  );
  return [
    'Same Temporal dev server, same S3 container, same corpus, same SQLite sink; figures at the largest N each design completed. ' +
      'One worker process per design runs the ladder of sizes; its peak RSS (VmHWM) is reset before each batch, so the figure is that batch\'s peak (the worker\'s RSS when idle, after start, in brackets).',
    '',
    table(['design', 'largest N completed', 'first failure (N: reason)', 'workflow input', 'longest history', 'worker peak RSS', 'time per 10,000'], summary),
    '',
    '<details><summary>Every run</summary>',
    '',
    detail,
    '',
    '</details>',
  ].join('\n');
}

function shortReason(run: DesignRun): string {
  const error = run.error ?? '';
  if (/Blob data size exceeds limit/i.test(error)) return 'server rejected the input: "Blob data size exceeds limit" (2 MiB)';
  const size = /Payload size (\d+) bytes exceeds the configured maxPayloadSize of (\d+)/.exec(error);
  if (size) return `S3 driver refused a ${mb(Number(size[1]))} payload (maxPayloadSize ${mib(Number(size[2]))})`;
  if (/history size exceeds|history count exceeds/i.test(error)) return 'history limit';
  return error.slice(0, 160).replace(/\|/g, '/');
}

/** The middle value (the upper one of an even count). */
function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** "total T ms (HTTP thread a, processing b, ...)": CPU per 1,000 memories by thread, median over runs. */
function cpuSplit(runs: { cpu?: ProcessCpu }[], memories: number): string | undefined {
  const measured = runs.map((r) => r.cpu).filter((cpu): cpu is ProcessCpu => cpu !== undefined);
  if (!measured.length) return undefined;
  const perThousand = (seconds: number) => (seconds * 1000 * 1000) / memories;
  const groups: [string, (cpu: ProcessCpu) => number][] = [
    ['HTTP thread', (cpu) => cpu.byThread.MainThread ?? 0],
    ['upload thread', (cpu) => cpu.byThread.upload ?? 0],
    ['processing thread', (cpu) => cpu.byThread.processing ?? 0],
    ['libuv pool (compression, files)', (cpu) => cpu.byThread['libuv-worker'] ?? 0],
    ['V8 helpers (GC, compiler)', (cpu) => cpu.byThread.V8Worker ?? 0],
  ];
  // The HTTP sink's requests go from a thread of their own.
  if (measured.some((cpu) => cpu.byThread.delivery !== undefined)) groups.push(['delivery thread', (cpu) => cpu.byThread.delivery ?? 0]);
  // Threads that ended before the last reading (an upload thread that went idle) count in the total only.
  groups.push(['ended threads', (cpu) => cpu.totalSeconds - Object.values(cpu.byThread).reduce((sum, seconds) => sum + seconds, 0)]);
  const parts = groups.map(([label, of]) => `${label} ${perThousand(median(measured.map(of))).toFixed(0)}`);
  return `${perThousand(median(measured.map((cpu) => cpu.totalSeconds))).toFixed(0)} ms in all (${parts.join(', ')})`;
}

function latency(section: Section<LatencyResult>): string {
  if (section.status !== 'measured') return notMeasured(section);
  const l = section.result;
  const cpu = l.cpuPerSubmitMs;
  // The busier of the two threads every submit passes through sets the floor.
  const busiest = cpu ? Math.max(cpu.httpThread, cpu.uploadThread ?? 0) : undefined;
  const floor = busiest !== undefined ? busiest * l.submitters : undefined;
  return [
    `${l.submitters} submitters at once, each sending ${l.rounds} batches of ${int(l.memoriesPerRequest)} memories (NDJSON) one after another; latency is POST until 202. Baseline: one submitter alone, same requests.`,
    '',
    table(
      ['submitters', 'requests', 'p50', 'p99', 'max', 'alone p50', 'alone p99', 'p50 vs alone', 'accepted memories/s'],
      [[
        String(l.submitters),
        String(l.concurrent.requests),
        `**${l.concurrent.p50Ms.toFixed(0)} ms**`,
        `**${l.concurrent.p99Ms.toFixed(0)} ms**`,
        `${l.concurrent.maxMs.toFixed(0)} ms`,
        `${l.alone.p50Ms.toFixed(0)} ms`,
        `${l.alone.p99Ms.toFixed(0)} ms`,
        x(l.concurrent.p50Ms / l.alone.p50Ms, 1),
        int(l.acceptedPerSecond),
      ]],
    ),
    ...(cpu && floor !== undefined
      ? [
          '',
          `The server's CPU per submit while they ran: ${cpu.total.toFixed(0)} ms in all (the processing of accepted batches included), ` +
            (cpu.uploadThread
              ? `${cpu.uploadThread.toFixed(0)} ms of it on the upload thread, which reads, checks and compresses every body, and ${cpu.httpThread.toFixed(0)} ms on the HTTP thread, which moves the bytes and stores the segments. `
              : `${cpu.httpThread.toFixed(0)} ms of it on the HTTP thread, which reads, checks and stores every body. `) +
            `With ${l.submitters} submitters each waiting for its answer before the next request, ` +
            `the busier of these threads alone puts the mean latency at ${floor.toFixed(0)} ms or more (Little's law: ${l.submitters} requests in the system, one served per ${busiest!.toFixed(0)} ms of that thread's time), ` +
            `against ${(5 * l.alone.p50Ms).toFixed(0)} ms for the target of 5× the p50 alone.`,
        ]
      : []),
  ].join('\n');
}

function httpSink(section: Section<HttpSinkResult> | undefined): string {
  if (!section) return '_Not measured: these results predate the HTTP sink._';
  if (section.status !== 'measured') return notMeasured(section);
  const h = section.result;
  const rows = h.receivers.map((r) => [
    r.serviceMs === 0 ? 'answers at once' : `${r.serviceMs} ms per request (a remote pipeline's latency)`,
    int(h.memories),
    int(r.endToEndMemoriesPerSecond),
    int(r.rawMemoriesPerSecond),
    `**${r.ratio.toFixed(2)}** (${r.ratioRange[0].toFixed(2)}–${r.ratioRange[1].toFixed(2)})`,
    r.processOnlyRatio.toFixed(2),
    r.uploadCeiling === undefined ? '–' : r.uploadCeiling.toFixed(2),
    `≥ ${h.target}: ${met(r.ratio >= h.target)}`,
  ]);
  return [
    `Memories per second from the start of the submit request to \`completed\`, through \`batchmem serve\` with \`BATCHMEM_SINK=http\`, submitted with \`invalid_items: record\` so that delivery starts with the first stored segment while the upload streams (signed NDJSON, ${h.chunkSize} memories a request, ${h.concurrency} in flight, no rate limit) to a loopback receiver, divided by the same receiver's raw accept rate: a plain client sending the same memories, pre-built and signed, in the same chunks with the same concurrency. Measured in turns, ${h.repeats} times each; the ratio is of the medians (the range is of each pair).`,
    '',
    table(['receiver', 'N', 'end to end /s', 'receiver raw /s', 'ratio (range)', 'delivery after the 202', 'ceiling: the upload alone', 'target'], rows),
    '',
    'Delivery after the 202: the memories not yet delivered at the 202, over the time from the 202 to `completed`, divided by the raw rate. Ceiling: end to end cannot be faster than the upload itself (POST to 202), so the ratio cannot exceed the upload\'s rate divided by the raw rate: with a receiver that accepts memories faster than batchmem ingests them, the ceiling, not the sink, bounds the ratio.',
    ...h.receivers.flatMap((r) => {
      const runs = r.runs.filter((run) => run.cpu && run.deliveredAtAccept !== undefined);
      if (!runs.length) return [];
      return [
        '',
        `${r.serviceMs === 0 ? 'Receiver answering at once' : `Receiver holding ${r.serviceMs} ms`}, medians: ${int(median(runs.map((run) => run.deliveredAtAccept!)))} of ${int(h.memories)} memories delivered by the 202 ` +
          `(the first ${median(runs.map((run) => run.firstDeliverySeconds ?? NaN)).toFixed(1)} s after the POST); the server's CPU per 1,000 memories ${cpuSplit(runs, h.memories)}.`,
      ];
    }),
  ].join('\n');
}

function fairness(section: Section<FairnessResult> | undefined): string {
  if (!section) return '_Not measured: these results predate the fairness benchmark._';
  if (section.status !== 'measured') return notMeasured(section);
  const f = section.result;
  const rows = f.runs.map((r) => {
    const ratio = r.underBacklog.p99Ms / r.alone.p99Ms;
    return [
      r.orchestrator,
      r.mechanism,
      `${r.backlogBatches} × ${int(r.backlogMemoriesPerBatch)}`,
      String(r.underBacklog.requests),
      `${r.underBacklog.p50Ms.toFixed(0)} ms`,
      `**${r.underBacklog.p99Ms.toFixed(0)} ms**`,
      `${r.alone.p50Ms.toFixed(0)} / ${r.alone.p99Ms.toFixed(0)} ms`,
      x(ratio, 1),
      `${r.backlogUnfinishedAtEnd} of ${r.backlogBatches}`,
      `${r.backlogSeconds.toFixed(1)} s`,
      `p99 ≤ 1 s: ${met(r.underBacklog.p99Ms <= 1000)}; ≤ 20× alone: ${met(ratio <= 20)}`,
    ];
  });
  for (const missing of f.notMeasured) rows.push([missing.orchestrator, `_not measured: ${missing.reason.replace(/\|/g, '/')}_`, '', '', '', '', '', '', '', '', '']);
  return [
    'Another tenant\'s small batch, from its POST until `completed`, submitted one after another (100 ms apart) once one tenant\'s backlog of large batches has been accepted and is processing. Baseline: the same small batch on the same server before the backlog. "Still running" counts the backlog batches unfinished when the last small batch completed (if 0, the last tries did not meet the backlog).',
    '',
    table(['orchestrator', 'how work is shared', 'backlog', 'tries', 'p50', 'p99', 'alone p50 / p99', 'p99 vs alone p99', 'backlog still running', 'backlog took', 'target'], rows),
  ].join('\n');
}

export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const noisy = Math.max(...m.loadAverageBefore.slice(0, 1), ...m.loadAverageAfter.slice(0, 1)) > m.cores;
  const c = results.corpus.sample;
  return [
    `## Results (${results.profile} profile)`,
    '',
    `- Date: ${results.date}`,
    `- Command: \`${results.command}\` (${results.seconds.toFixed(0)} s)`,
    `- Machine: ${m.cores} cores (\`nproc\`), ${m.cpuModel}, ${mib(m.memoryBytes)} RAM, ${m.platform}; Node.js ${m.node}`,
    `- Load average (1/5/15 min) before: ${m.loadAverageBefore.join(' / ')}, after: ${m.loadAverageAfter.join(' / ')}` +
      (noisy ? ' — **the machine was busy with other work, so absolute figures are noisy; ratios measured in turns are steadier**' : ''),
    `- Corpus: seed ${results.corpus.seed}; first ${int(c.count)} memories: mean ${int(c.meanBytes)} B, median ${int(c.p50Bytes)} B, p90 ${int(c.p90Bytes)} B, p99 ${int(c.p99Bytes)} B, ` +
      `range ${int(c.minBytes)}–${int(c.maxBytes)} B; ${Object.entries(c.byKind).map(([k, n]) => `${k} ${Math.round((100 * n) / c.count)}%`).join(', ')}`,
    '',
    '### 1. Compression',
    '',
    compression(results.compression),
    '',
    '### 2. End-to-end throughput against the storage limit',
    '',
    throughput(results.throughput, results.temporal),
    '',
    '### 3. Peak RSS of the API process while ingesting by NDJSON (embedded)',
    '',
    rss(results.rss),
    '',
    '### 4. Temporal: workflow input and history against N (batchmem)',
    '',
    historyVsN(results.temporal),
    '',
    '### 5. Three designs on one Temporal server',
    '',
    designs(results.temporal),
    '',
    '### 6. Submit latency, 20 concurrent submitters (embedded)',
    '',
    latency(results.latency),
    '',
    '### 7. HTTP pipeline sink against the receiver\'s raw accept rate (embedded)',
    '',
    httpSink(results.httpSink),
    '',
    '### 8. Fair share: another tenant\'s small batch behind one tenant\'s backlog',
    '',
    fairness(results.fairness),
    '',
  ].join('\n');
}
