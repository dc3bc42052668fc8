// Runs `bin/batchmem.js serve` (or `worker`) as a child process the benchmarks can measure: its pid, its peak
// resident set (VmHWM from /proc) and a periodic RSS sample. Output is kept as a bounded tail for error messages.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../test/support/server-process.ts';

const root = join(import.meta.dirname, '..');

/** The Node.js flags on the shebang of bin/batchmem.js (`#!/usr/bin/env -S node <flags>`). */
export function productNodeFlags(): string[] {
  const shebang = readFileSync(join(root, 'bin/batchmem.js'), 'utf8').split('\n')[0] ?? '';
  return shebang.split(/\s+/).filter((part) => part.startsWith('--'));
}

export interface ProcessMemory {
  /** Peak resident set since the process started (VmHWM), in bytes. */
  peakRssBytes: number;
  /** Current resident set (VmRSS), in bytes. */
  rssBytes: number;
}

/** Reads VmHWM and VmRSS of a process from /proc (Linux). */
export function processMemory(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { peakRssBytes: kib('VmHWM'), rssBytes: kib('VmRSS') };
}

/** CPU time a process has used, in seconds: in all (exited threads included) and by thread name. */
export interface ProcessCpu {
  totalSeconds: number;
  /**
   * Threads' CPU summed by name (`/proc/<pid>/task/<tid>/comm`): `MainThread` (the HTTP thread), `processing`
   * (the embedded runner's thread), `libuv-worker` (compression, file I/O), `V8Worker` (GC and compilation)...
   */
  byThread: Record<string, number>;
}

/** CPU seconds in a /proc stat line (utime + stime, fields 14 and 15, in clock ticks of 1/100 s). */
function statSeconds(stat: string): number {
  // The name field may hold spaces and parentheses; the fields after it start past the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Each live thread of a process: its name and CPU seconds so far, by thread id (Linux /proc). */
function threadCpu(pid: number): Map<string, { name: string; seconds: number }> {
  const threads = new Map<string, { name: string; seconds: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      threads.set(tid, { name, seconds: statSeconds(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) });
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return threads;
}

/**
 * A process's CPU by thread name, threads that have ended included: /proc lists live threads only, and the server's
 * upload thread ends as soon as a large upload is read, before a benchmark's last reading. Every thread is read every
 * 100 ms while the process runs, so an ended thread counts with its last reading (all but its last 100 ms at most,
 * which stay under "ended threads"). `stop` ends the readings.
 */
export function processCpuTracker(pid: number): { cpu(): ProcessCpu; stop(): void } {
  const seen = new Map<string, { name: string; seconds: number }>();
  const read = () => {
    try {
      for (const [tid, thread] of threadCpu(pid)) seen.set(tid, thread);
    } catch {
      // the process has exited
    }
  };
  read();
  const timer = setInterval(read, 100);
  timer.unref();
  return {
    cpu() {
      read();
      const byThread: Record<string, number> = {};
      for (const { name, seconds } of seen.values()) byThread[name] = (byThread[name] ?? 0) + seconds;
      return { totalSeconds: statSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8')), byThread };
    },
    stop: () => clearInterval(timer),
  };
}

/** What `after` used beyond `before`, by the same split. */
export function cpuSince(before: ProcessCpu, after: ProcessCpu): ProcessCpu {
  const byThread: Record<string, number> = {};
  for (const [name, seconds] of Object.entries(after.byThread)) byThread[name] = seconds - (before.byThread[name] ?? 0);
  return { totalSeconds: after.totalSeconds - before.totalSeconds, byThread };
}

/**
 * Resets a process's VmHWM to its current RSS (Linux: writing 5 to /proc/<pid>/clear_refs), so that the next
 * reading is the peak of what follows. Returns false where that is not allowed; the peak then covers the lifetime.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export interface BenchProcess {
  readonly pid: number;
  readonly url: string;
  output(): string;
  memory(): ProcessMemory;
  cpu(): ProcessCpu;
  /** See resetPeakRss. */
  resetPeak(): boolean;
  stop(): Promise<void>;
}

export interface BenchServerOptions {
  command?: 'serve' | 'worker';
  /** Another script to run instead of the CLI (a benchmark's own worker); readiness then comes from `readyLine`. */
  script?: string;
  env: Record<string, string>;
  /** Wait for /healthz (serve) or for this line in the output (worker). */
  readyLine?: string;
}

export function benchApiKey() {
  return { key: `bench-${randomBytes(16).toString('hex')}`, organization: 'bench', namespace: 'bench', user: 'bench', workspace: 'bench' };
}

export async function startProcess(options: BenchServerOptions): Promise<BenchProcess> {
  const command = options.script ? 'script' : (options.command ?? 'serve');
  const port = Number(options.env.BATCHMEM_PORT ?? (await freePort()));
  const url = `http://127.0.0.1:${port}`;
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  // batchmem itself runs through its package bin, as a user runs it: that carries the product's Node.js flags.
  // A benchmark's own script gets the same Node.js flags, so that both sides of a comparison run alike.
  const [file, args] = options.script
    ? [process.execPath, [...productNodeFlags(), options.script]]
    : [join(root, 'bin/batchmem.js'), [command]];
  const child: ChildProcess = spawn(file, args, {
    cwd: root,
    env: {
      ...(process.env.NODE_OPTIONS ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : {}),
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      ...(process.env.MALLOC_ARENA_MAX ? { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX } : {}),
      // A setting given to the bench (BATCHMEM_PROCESSING_THREAD=false, say) reaches every server it starts.
      ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('BATCHMEM_'))),
      ...options.env,
      BATCHMEM_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`batchmem ${command} exited with ${child.exitCode} while starting:\n${output.slice(-4000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`batchmem ${command} was not ready within 120 s:\n${output.slice(-4000)}`);
    }
    if (command === 'serve') {
      try {
        if ((await fetch(`${url}/healthz`)).ok) break;
      } catch {
        // not listening yet
      }
    } else if (options.readyLine && output.includes(options.readyLine)) {
      break;
    } else if (!options.readyLine) {
      break;
    }
    await sleep(100);
  }

  const cpuTracker = processCpuTracker(child.pid!);
  void exited.then(() => cpuTracker.stop());
  return {
    pid: child.pid!,
    url,
    output: () => output,
    memory: () => processMemory(child.pid!),
    cpu: () => cpuTracker.cpu(),
    resetPeak: () => resetPeakRss(child.pid!),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

// Runs in a worker thread, so that samples keep coming while the main thread is busy generating an upload.
const samplerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const start = Date.now();
const series = [];
const timer = setInterval(() => {
  try {
    const status = readFileSync('/proc/' + workerData.pid + '/status', 'utf8');
    series.push([Date.now() - start, Number(/^VmRSS:\\s+(\\d+) kB/m.exec(status)[1]) * 1024]);
  } catch {}
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  parentPort.postMessage(series);
});
`;

/** Samples a process's RSS every `intervalMs` (from a worker thread) until stopped: the series, and the final VmHWM. */
export function sampleMemory(proc: BenchProcess, intervalMs = 250) {
  const start = performance.now();
  const thread = new Worker(samplerSource, { eval: true, workerData: { pid: proc.pid, intervalMs } });
  let series: { ms: number; rssBytes: number }[] = [];
  return {
    /** Largest sampled RSS from `fromMs` to `toMs` after the sampler started (after `stop`). */
    maxBetween(fromMs: number, toMs = Infinity): number {
      return Math.max(0, ...series.filter((s) => s.ms >= fromMs && s.ms <= toMs).map((s) => s.rssBytes));
    },
    elapsedMs: () => performance.now() - start,
    async stop(): Promise<ProcessMemory & { series: { ms: number; rssBytes: number }[] }> {
      const samples = new Promise<[number, number][]>((resolve) => thread.once('message', resolve));
      thread.postMessage('stop');
      series = (await samples).map(([ms, rssBytes]) => ({ ms, rssBytes }));
      await thread.terminate();
      return { ...proc.memory(), series };
    },
  };
}
