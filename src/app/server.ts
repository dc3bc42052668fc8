// Starts the API process: configuration, adapters, HTTP server, background work, graceful shutdown.
import { serve } from '@hono/node-server';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { keyring, loadApiKeys } from './api-keys.ts';
import type { Config } from './config.ts';
import { tenantCapWarning } from './fair-share.ts';
import { createHttpApp } from './http/app.ts';
import { settleUnreadBodies } from './http/unread-body.ts';
import { createLogger, type Logger } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { startTelemetry } from './telemetry.ts';
import { UploadThread } from './upload-thread.ts';
import { type AdapterDecorators, buildRuntime } from './wire.ts';

export interface RunningServer {
  port: number;
  logger: Logger;
  close(): Promise<void>;
}

/** `decorate`: wrappers around the configured adapters (a test harness's seam; production passes none). */
export async function startServer(config: Config, decorate?: AdapterDecorators): Promise<RunningServer> {
  // Before anything else, so the spans of everything that follows reach the exporter.
  const telemetry = await startTelemetry('batchmem-api');
  const logger = createLogger(config.BATCHMEM_LOG_LEVEL, undefined, { traceIds: telemetry !== undefined });
  const metrics = createMetrics();
  if (config.BATCHMEM_ORCHESTRATOR === 'local') {
    // A valid configuration, but not the fair share the setting's name promises: say so once, at start.
    const warning = tenantCapWarning(config.BATCHMEM_BATCH_CONCURRENCY, config.BATCHMEM_TENANT_CONCURRENCY);
    if (warning) logger.warn({ batchConcurrency: config.BATCHMEM_BATCH_CONCURRENCY, tenantConcurrency: config.BATCHMEM_TENANT_CONCURRENCY }, warning);
  }
  const { keys, generated } = loadApiKeys(config);
  if (generated) {
    // Shown once, on the terminal, when the key is created; never through the logger.
    process.stderr.write(`\nbatchmem created an API key (kept in ${generated.path}):\n\n  ${generated.key}\n\n`);
  }
  const runtime = await buildRuntime(config, logger, metrics, telemetry, decorate);
  // The API reports the store's backlog; workers do not, so the gauges come from one kind of process only.
  metrics.trackBacklog(() => runtime.services.batches.backlog());
  const uploads = config.BATCHMEM_UPLOAD_THREAD ? new UploadThread({ settings: runtime.services.settings, logger }) : undefined;
  const shutdown = new AbortController();
  const app = createHttpApp({
    services: runtime.services,
    keys: keyring(keys),
    logger,
    metrics,
    maxJsonBodyBytes: config.BATCHMEM_MAX_JSON_BODY_BYTES,
    maxNdjsonBodyBytes: config.BATCHMEM_MAX_NDJSON_BODY_BYTES,
    singleAddWaitMs: config.BATCHMEM_SINGLE_ADD_WAIT_MS,
    bodyReader: uploads,
    shutdown: shutdown.signal,
  });
  // Batches of any size: Node's whole-request deadline (`requestTimeout`, 5 minutes by default) would cut off a large
  // body still arriving at a good pace (1.5 GB at 5 MB/s takes 5 minutes). A connection that goes quiet is closed
  // instead, after BATCHMEM_IDLE_TIMEOUT_MS without a byte either way; headers keep Node's own 60 s deadline, and the
  // event stream's heartbeat (15 s) keeps a quiet stream alive.
  const serverOptions = { requestTimeout: 0 };
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.BATCHMEM_PORT, hostname: config.BATCHMEM_HOST, serverOptions }, () => resolve(s));
  });
  server.setTimeout(config.BATCHMEM_IDLE_TIMEOUT_MS);
  // Bodies answered before they were read: discarded within bounds, or the connection closed after the answer.
  settleUnreadBodies(server as Server);
  // `Expect: 100-continue`: Node would answer 100 at once, before the key or the declared length is looked at, and
  // the client would upload a body only to be refused. Instead the request runs as any other and 100 is sent when
  // its handler first reads the body, i.e. after authentication and the route's checks passed.
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    request.once('resume', () => {
      if (!response.headersSent) response.writeContinue();
    });
    server.emit('request', request, response);
  });
  const port = (server.address() as AddressInfo).port;
  logger.info(
    {
      port,
      store: config.BATCHMEM_STORE,
      payloads: config.BATCHMEM_PAYLOADS,
      sink: config.BATCHMEM_SINK,
      orchestrator: config.BATCHMEM_ORCHESTRATOR,
      apiKeys: keys.length,
      tracing: telemetry !== undefined,
    },
    'batchmem is listening',
  );
  await runtime.startBackground();
  return {
    port,
    logger,
    async close() {
      // Event streams would hold the stop until their batches finish (minutes for a large one): they end now, and
      // their clients resume with Last-Event-ID elsewhere. Requests in flight, uploads above all, are answered first.
      shutdown.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // `close` drops the connections idle at that moment only; one whose answer ends later would stay open for the
      // keep-alive timeout (5 s) before the server may finish closing.
      const sweep = setInterval(() => (server as Server).closeIdleConnections(), 100);
      await closed;
      clearInterval(sweep);
      // No request is left, so no upload either.
      await uploads?.close();
      await runtime.close();
      await telemetry?.shutdown();
    },
  };
}
