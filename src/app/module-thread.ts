// Starting one of the API process's worker threads (processing, upload) on the product's own modules: the thread
// gets them as JavaScript the main thread already stripped of its types, so it never loads a TypeScript stripper.
import { readdirSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type ResourceLimits, Worker } from 'node:worker_threads';

/**
 * The thread's first code: it loads the product's modules from JavaScript the main thread stripped of its types
 * (`sources`, file URL to code), then the entry. Node.js strips types with a WebAssembly compiler loaded once per
 * thread, which then stays: about 13 MiB of the thread's memory for the lifetime of the process (measured:
 * docs/benchmarks.md). A module not in `sources` (a test harness's decorators) is loaded as Node.js loads it.
 */
const bootstrap = `
const { registerHooks } = require('node:module');
const { workerData } = require('node:worker_threads');
let sources = workerData.sources;
registerHooks({
  load(url, context, nextLoad) {
    const source = sources[url];
    return source === undefined ? nextLoad(url, context) : { format: 'module', source, shortCircuit: true };
  },
});
// Once the entry has run (its stores open, the modules it imports loaded), the sources are let go.
import(workerData.entry).then(() => {
  sources = {};
  workerData.sources = undefined;
});
`;

/** strippedSources' result, made once per process: a thread may start many times (the upload thread ends when idle). */
let stripped: Record<string, string> | undefined;

/**
 * Every TypeScript module under src/, stripped of its types as Node.js would strip it (the same function, so the
 * same code at the same positions), keyed by file URL. The main thread has the stripper loaded already. Made on the
 * first call and kept (about 0.7 MiB): stripping the whole tree took the calling thread, which serves HTTP, 95 to 198 ms
 * on every thread start.
 */
function strippedSources(): Record<string, string> {
  stripped ??= stripSources();
  return stripped;
}

function stripSources(): Record<string, string> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const sources: Record<string, string> = {};
  // stripTypeScriptTypes warns that it is experimental on every start; the loader that strips our modules uses it
  // without a warning, and so does this.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => undefined;
  try {
    for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts')) continue;
      const path = join(root, file);
      sources[pathToFileURL(path).href] = stripTypeScriptTypes(readFileSync(path, 'utf8'));
    }
  } finally {
    process.emitWarning = emitWarning;
  }
  return sources;
}

/**
 * A thread's V8 limits unless it asks for others: a young generation of 8 MiB. Segment and upload work make much
 * short-lived garbage, and V8 would otherwise grow a thread's young generation to its maximum (100,000 memories peaked
 * at 320 MiB with V8's default, 294 MiB with 8 MiB; docs/benchmarks.md). Under `batchmem` itself this limit is
 * overridden: V8 applies the process's `--max-semi-space-size` (bin/batchmem.js) to every isolate after a worker's
 * own limits (measured: a worker given 8 MiB here gets a 4 MiB new space under `--max-semi-space-size=2`, 16 MiB
 * under `=8`). It applies where Node.js runs without that flag: the product in-process, as the tests run it.
 */
export const threadResourceLimits: ResourceLimits = { maxYoungGenerationSizeMb: 8 };

/**
 * A worker thread running the module `entry` (a file URL under src/), named `name` (as per-thread tools show it),
 * with `workerData` structured-cloned into it and the given V8 limits (`threadResourceLimits` when none are given).
 * Throws what `new Worker` throws.
 */
export function moduleThread(entry: URL, options: { name: string; workerData: object; resourceLimits?: ResourceLimits }): Worker {
  return new Worker(bootstrap, {
    eval: true,
    name: options.name,
    workerData: { ...options.workerData, entry: entry.href, sources: strippedSources() },
    resourceLimits: options.resourceLimits ?? threadResourceLimits,
  });
}
