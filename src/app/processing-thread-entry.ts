// The processing thread's own code (a worker_threads Worker started by processing-thread.ts): the embedded
// orchestrator runs here, so reading, checking, decompressing, parsing and writing segments never holds up the thread
// that serves HTTP. It opens its own connections to the configured stores (SQLite in WAL mode serves one writer and
// many readers across threads), and reports metrics through the main thread, which owns the Prometheus registry.
import { context, propagation, ROOT_CONTEXT } from '@opentelemetry/api';
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { HttpSinkObserver } from '../adapters/http/memory-sink.ts';
import { createLogger } from './logger.ts';
import type { Observer } from './observer.ts';
import type { FromThread, ThreadData, ToThread } from './processing-thread.ts';
import { startTelemetry } from './telemetry.ts';
import { type AdapterDecorators, buildContext, localOrchestrator } from './wire.ts';

const data = workerData as ThreadData;
const port = parentPort!;
const post = (message: FromThread) => port.postMessage(message);

/** Metric reports are messages to the main thread: postMessage keeps their order, and a report costs microseconds. */
function report(target: 'observer' | 'httpSink', method: string, args: unknown[]): void {
  post({ type: 'observe', target, method, args });
}
const sinkObserver: HttpSinkObserver = {
  requestFinished: (...args) => report('httpSink', 'requestFinished', args),
  retried: (...args) => report('httpSink', 'retried', args),
  paused: (...args) => report('httpSink', 'paused', args),
};
const observer: Observer | undefined = data.metrics
  ? {
      batchSubmitted: (...args) => report('observer', 'batchSubmitted', args),
      batchStarted: (...args) => report('observer', 'batchStarted', args),
      segmentProcessed: (...args) => report('observer', 'segmentProcessed', args),
      segmentFailed: (...args) => report('observer', 'segmentFailed', args),
      sinkWritten: (...args) => report('observer', 'sinkWritten', args),
      batchFinished: (...args) => report('observer', 'batchFinished', args),
      webhookAttempted: (...args) => report('observer', 'webhookAttempted', args),
      httpSink: () => sinkObserver,
    }
  : undefined;

lowerPriority(data.config.BATCHMEM_PROCESSING_NICE);

/**
 * Raises this thread's nice value by `increment` (0 to 19), so that the HTTP thread wins when both want a core:
 * a submitter waits on the upload, while a segment's work can go a moment later. Linux schedules threads apart, and
 * setpriority(2) given a thread id applies to that thread alone (the id comes from /proc/thread-self). Lowering one's
 * own priority needs no privilege; where it fails (another OS, a sandbox) the thread simply keeps the process's.
 */
function lowerPriority(increment: number): void {
  if (increment === 0) return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    setPriority(tid, Math.min(19, getPriority(tid) + increment));
  } catch {
    // not Linux, or not permitted: same priority as the HTTP thread
  }
}

const telemetry = await startTelemetry('batchmem-api');
const logger = createLogger(data.config.BATCHMEM_LOG_LEVEL, undefined, { traceIds: telemetry !== undefined })
  .child({ thread: 'processing' }); // literal: the thread's name, not a batch status
const decorate: AdapterDecorators = data.decorators
  ? ((await import(data.decorators)) as { adapterDecorators(): AdapterDecorators }).adapterDecorators()
  : {};
const services = await buildContext(data.config, observer, decorate);
const orchestrator = localOrchestrator(data.config, services, logger, data.workerId);

async function call(method: 'resume' | 'idle' | 'close' | 'check'): Promise<unknown> {
  switch (method) {
    case 'resume':
      return orchestrator.resume();
    case 'idle':
      return orchestrator.idle();
    case 'check':
      // The answer itself is the check: the thread is up and its loop turns (the stores are checked by the API). The
      // HTTP sink's Retry-After gate and breaker live with this thread's delivery thread, which the API's sink lacks.
      await services.sink.checkFlowing?.();
      return undefined;
    case 'close':
      decorate.closing?.();
      await orchestrator.close();
      await Promise.allSettled([services.batches.close(), services.payloads.close(), services.sink.close()]);
      await telemetry?.shutdown();
      return undefined;
  }
}

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'start':
      // The run's spans continue the trace of the request that started it.
      context.with(propagation.extract(ROOT_CONTEXT, message.carrier), () => void orchestrator.start(message.key, message.options));
      return;
    case 'cancel':
      void orchestrator.cancel(message.key);
      return;
    case 'redeliver':
      void orchestrator.redeliver(message.key);
      return;
    case 'call':
      call(message.method).then(
        (value) => {
          post({ type: 'reply', id: message.id, value });
          // After the close is answered nothing is left to do: the thread ends once its port is closed.
          if (message.method === 'close') port.close();
        },
        (error: unknown) => post({ type: 'reply', id: message.id, error: (error as Error).message ?? String(error) }),
      );
  }
});
post({ type: 'ready' });
logger.info({ workerId: data.workerId }, 'processing thread is running');
