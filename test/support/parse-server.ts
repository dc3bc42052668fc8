// Starts Parse Server 9 in-process on a random port, on the PostgreSQL container from the harness, with its files
// in a temporary folder, and runs `migrateParse` against it. Returns what the Parse adapters' configuration needs.
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { FileSystemAdapter, ParseServer } from 'parse-server';
import { migrateParse, type MigrationReport, type UniqueIndexMaker } from '../../src/adapters/parse/migrate.ts';
import { connectParse, disconnectParse, type ParseSettings } from '../../src/adapters/parse/connection.ts';
import { tempDir } from './local-context.ts';

export interface ParseServerHandle extends ParseSettings {
  /** Folder holding the uploaded files (`<folder>/<file name>`), for tests that tamper with them. */
  filesDir: string;
  migration: MigrationReport;
  /** Creates unique indexes through the in-process server's storage adapter, as `migrateParse` needs them. */
  uniqueIndexes: UniqueIndexMaker;
  /** Stops listening and closes the database pool; safe to call twice. */
  stop(): Promise<void>;
}

export interface ParseServerOptions {
  /** `postgres://…` of the database, e.g. `startPostgres().url`. */
  databaseURI: string;
  /** Organizations whose roles `migrateParse` creates up front. */
  organizations?: string[];
  /** Extra Parse Server options, e.g. `{ logLevel: 'info' }` while debugging. */
  extra?: Record<string, unknown>;
  /** For a development server (scripts/parse-dev-server.ts): fixed port, keys and a files folder that is kept. */
  port?: number;
  appId?: string;
  masterKey?: string;
  filesDir?: string;
}

interface StorageAdapter {
  ensureUniqueness(className: string, schema: unknown, fieldNames: string[]): Promise<void>;
  // Internals of the Postgres adapter: its `handleShutdown` ends the pool without waiting for it.
  _stream?: { done(): void };
  _client?: {
    $pool: { end(): Promise<void>; ending?: boolean; on(event: 'connect' | 'error', listener: (client: EventEmitter) => void): void };
  };
}

export async function startParseServer(options: ParseServerOptions): Promise<ParseServerHandle> {
  const files = options.filesDir ? { path: options.filesDir, remove: () => {} } : tempDir();
  const appId = options.appId ?? `batchmem-${randomBytes(4).toString('hex')}`;
  const masterKey = options.masterKey ?? randomBytes(24).toString('hex');
  const app = express();
  const listener = await new Promise<Server>((resolve, reject) => {
    const server = app.listen(options.port ?? 0, '127.0.0.1', () => resolve(server)).once('error', reject);
  });
  const port = (listener.address() as AddressInfo).port;
  const serverURL = `http://127.0.0.1:${port}/parse`;

  const parse = ParseServer({
    appId,
    masterKey,
    serverURL,
    databaseURI: options.databaseURI,
    filesAdapter: tempFolderFilesAdapter(files.path),
    maxUploadSize: '64mb',
    // Segment files are read by the service with the master key only.
    fileDownload: { enableForPublic: false, enableForAnonymousUser: false, enableForAuthenticatedUser: false },
    // The tests create Parse users (the ACL test) through the REST API.
    enforcePrivateUsers: true,
    silent: process.env.BATCHMEM_PARSE_VERBOSE !== 'true',
    logLevel: 'error',
    // The announced future defaults, set now: the server under test is the one teams will run, and it stays quiet.
    fileUpload: { allowedFileUrlDomains: [] },
    pages: { encodePageParamHeaders: true },
    readOnlyMasterKeyIps: ['127.0.0.1', '::1'],
    requestComplexity: {
      includeDepth: 10, includeCount: 100, subqueryDepth: 10, queryDepth: 10, graphQLDepth: 20, graphQLFields: 200,
      batchRequestLimit: 100,
    },
    protectedFieldsOwnerExempt: false,
    protectedFieldsTriggerExempt: true,
    protectedFieldsSaveResponseExempt: false,
    installation: { duplicateDeviceTokenActionEnforceAuth: true },
    allowAggregationForReadOnlyMasterKey: false,
    ...options.extra,
  } as unknown as Parameters<typeof ParseServer>[0]);
  const adapter = (parse as unknown as { config: { databaseController: { adapter: StorageAdapter } } }).config
    .databaseController.adapter;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    disconnectParse();
    listener.closeAllConnections();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    // Every connection closed before the caller stops PostgreSQL: a pooled connection still open then fails with
    // "terminating connection due to administrator command" as an uncaught exception, in whatever test runs next.
    adapter._stream?.done();
    if (adapter._client && !adapter._client.$pool.ending) await adapter._client.$pool.end();
    files.remove();
  };

  try {
    await parse.start();
  } catch (error) {
    await stop();
    throw new Error(`Parse Server did not start on ${options.databaseURI}: ${(error as Error).message}`, { cause: error });
  }
  const exitHandlers = new Set(process.listeners('uncaughtException'));
  app.use('/parse', parse.app);
  // When PostgreSQL goes away (a container stopped or restarted by a test) its connections get "terminating
  // connection"; the pool re-emits an idle one's error, and once ended (its end() does not wait for the connections
  // to close) nobody listens any more: an uncaught exception in whatever test runs next. Busy connections fail their
  // queries as before; these listeners only keep the rest from crashing the test worker.
  adapter._client?.$pool.on('error', () => {});
  adapter._client?.$pool.on('connect', (client) => client.on('error', () => {}));
  // Parse Server answers any uncaught exception with process.exit(1); in a test worker that hides the error.
  for (const handler of process.listeners('uncaughtException')) {
    if (!exitHandlers.has(handler)) process.off('uncaughtException', handler);
  }

  const settings: ParseSettings = { serverURL, appId, masterKey };
  const uniqueIndexes: UniqueIndexMaker = (className, fieldNames) => adapter.ensureUniqueness(className, {}, [...fieldNames]);
  const migration = await migrateParse(connectParse(settings), {
    organizations: options.organizations ?? [],
    uniqueIndexes,
    log: () => {},
  });
  if (migration.problems.length > 0) {
    await stop();
    throw new Error(`migrateParse left problems:\n${migration.problems.join('\n')}`);
  }
  return { ...settings, filesDir: files.path, migration, uniqueIndexes, stop };
}

/**
 * The FS files adapter writes under `./files/<sub folder>` of the working directory; this keeps its files in a
 * temporary folder instead, so a test run leaves nothing in the repository.
 */
function tempFolderFilesAdapter(folder: string): InstanceType<typeof FileSystemAdapter> {
  const Adapter = FileSystemAdapter as unknown as new (options: object) => object;
  class TempFolderFilesAdapter extends Adapter {
    _getApplicationDir(): string {
      return folder;
    }
  }
  return new TempFolderFilesAdapter({}) as InstanceType<typeof FileSystemAdapter>;
}
