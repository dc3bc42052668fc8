// `npm run bench` (quick profile, a few minutes) and `npm run bench -- --full`: runs every measurement, prints the
// table, and writes bench/results/latest.json and bench/results/latest.md.
// `--only=compression,throughput,rss,latency,temporal,httpsink,fairness` runs a subset and writes nothing (for working on one part).
// `--docs` also puts the table into docs/benchmarks.md, between its bench:results markers.
// `--render` measures nothing: it renders bench/results/latest.json again (after a change to the report's layout).
import './temporal/protobufjs-dedupe.ts';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCompression } from './compression.ts';
import { defaultSeed, describeCorpus } from './corpus.ts';
import { runEmbeddedThroughput, runLatency, runRss } from './embedded.ts';
import { runFairness } from './fairness.ts';
import { runHttpSink } from './http-sink.ts';
import { type BenchResults, renderMarkdown, type Section } from './report.ts';
import { runTemporal } from './temporal/designs.ts';

const sections = ['compression', 'throughput', 'rss', 'latency', 'temporal', 'httpsink', 'fairness'] as const;
type SectionName = (typeof sections)[number];

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    docs: { type: 'boolean', default: false },
    render: { type: 'boolean', default: false },
  },
});
const profile = values.full ? 'full' : 'quick';
const only = values.only ? (values.only.split(',') as SectionName[]) : [...sections];
for (const name of only) if (!sections.includes(name)) throw new Error(`unknown section ${name}; choose from ${sections.join(', ')}`);

const plan = values.full
  ? {
      corpusSample: 100_000,
      compression: { memories: 40_000, rounds: 10 },
      throughput: { memories: 200_000, repeats: 3 },
      rss: [10_000, 100_000, 1_000_000],
      latency: { submitters: 20, memoriesPerRequest: 1000, rounds: 10 },
      temporal: {
        naiveLadder: [100, 200, 500, 1000, 1100, 1200, 1300, 1400, 1500, 2000, 5000],
        externalStorageLadder: [100, 1000, 10_000, 20_000, 30_000, 35_000, 40_000, 50_000, 100_000],
        batchmemLadder: [100, 1000, 10_000, 100_000, 1_000_000],
        parseMemories: 50_000,
      },
      httpSink: { memories: 100_000, repeats: 3, serviceTimesMs: [0, 50] },
      fairness: { backlogBatches: 5, backlogMemoriesPerBatch: 150_000, smallMemories: 10, tries: 20 },
    }
  : {
      corpusSample: 20_000,
      compression: { memories: 6000, rounds: 15 },
      throughput: { memories: 30_000, repeats: 3 },
      rss: [10_000, 100_000],
      latency: { submitters: 20, memoriesPerRequest: 1000, rounds: 3 },
      temporal: {
        naiveLadder: [100, 1000, 1200, 1400, 1600, 2000],
        externalStorageLadder: [100, 1000, 10_000, 20_000, 40_000],
        batchmemLadder: [100, 1000, 10_000, 100_000],
        parseMemories: 5000,
      },
      httpSink: { memories: 30_000, repeats: 3, serviceTimesMs: [0, 50] },
      fairness: { backlogBatches: 5, backlogMemoriesPerBatch: 30_000, smallMemories: 10, tries: 10 },
    };

const log = (line: string) => process.stdout.write(line + '\n');
const npmCommand = process.env.npm_lifecycle_event === 'bench';
const args = process.argv.slice(2);
const command = npmCommand ? `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}` : `node bench/run.ts ${args.join(' ')}`.trim();

function nproc(): number {
  try {
    return Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    return cpus().length;
  }
}

async function section<T>(name: SectionName, work: () => Promise<T> | T): Promise<Section<T>> {
  if (!only.includes(name)) return { status: 'skipped', reason: 'not selected with --only' };
  log(`\n== ${name}`);
  const start = performance.now();
  try {
    const result = await work();
    return { status: 'measured', seconds: (performance.now() - start) / 1000, result };
  } catch (error) {
    log(`  ${name} could not be measured: ${(error as Error).stack ?? error}`);
    return { status: 'error', reason: (error as Error).message.split('\n')[0]!.slice(0, 500) };
  }
}

const resultsDir = join(import.meta.dirname, 'results');

function write(results: BenchResults): void {
  const markdown = renderMarkdown(results);
  log('\n' + markdown);
  if (values.only) {
    log('(--only: results not written)');
    return;
  }
  mkdirSync(resultsDir, { recursive: true });
  if (!values.render) writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(resultsDir, 'latest.md'), markdown);
  log(`wrote bench/results/${values.render ? '' : 'latest.json and bench/results/'}latest.md`);
  if (values.docs) {
    const docsPath = join(import.meta.dirname, '..', 'docs', 'benchmarks.md');
    const begin = '<!-- bench:results:begin -->';
    const end = '<!-- bench:results:end -->';
    const docs = readFileSync(docsPath, 'utf8');
    const from = docs.indexOf(begin);
    const to = docs.indexOf(end);
    if (from < 0 || to < from) throw new Error(`docs/benchmarks.md has no ${begin} ... ${end} markers`);
    writeFileSync(docsPath, docs.slice(0, from + begin.length) + '\n' + markdown + docs.slice(to));
    log('updated docs/benchmarks.md');
  }
}

if (values.render) {
  write(JSON.parse(readFileSync(join(resultsDir, 'latest.json'), 'utf8')) as BenchResults);
  process.exit(0);
}

const startedAt = new Date();
const loadBefore = loadavg();
log(`batchmem benchmarks, ${profile} profile: ${command}`);
const corpusStats = describeCorpus(plan.corpusSample);
log(`corpus (first ${plan.corpusSample}): mean ${corpusStats.meanBytes} B, p50 ${corpusStats.p50Bytes} B, p99 ${corpusStats.p99Bytes} B, ${corpusStats.minBytes}..${corpusStats.maxBytes} B`);

const results: BenchResults = {
  date: startedAt.toISOString(),
  command,
  profile,
  machine: {
    cores: nproc(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverageBefore: loadBefore.map((l) => Math.round(l * 100) / 100),
    loadAverageAfter: [],
  },
  corpus: { seed: defaultSeed, sample: corpusStats },
  compression: await section('compression', () => runCompression({ ...plan.compression, log })),
  throughput: await section('throughput', () => runEmbeddedThroughput({ ...plan.throughput, log })),
  rss: await section('rss', () => runRss({ sizes: plan.rss, log })),
  latency: await section('latency', () => runLatency({ ...plan.latency, log })),
  temporal: await section('temporal', () => runTemporal({ ...plan.temporal, log })),
  httpSink: await section('httpsink', () => runHttpSink({ ...plan.httpSink, log })),
  fairness: await section('fairness', () => runFairness({ ...plan.fairness, log })),
  seconds: 0,
};
results.seconds = (Date.now() - startedAt.getTime()) / 1000;
results.machine.loadAverageAfter = loadavg().map((l) => Math.round(l * 100) / 100);
write(results);
// Temporal's native runtime keeps the event loop alive.
process.exit(0);
