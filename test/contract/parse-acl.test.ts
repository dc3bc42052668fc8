// What a Parse user sees of batchmem's objects when it talks to Parse Server directly with its own session (no master
// key): its own batch, memories and item errors (and, through its organization's role, the payload file rows), and
// nothing of another organization's, which it can neither read, list nor change.
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { organizationRoleName } from '../../src/adapters/parse/acl.ts';
import { ParseBatchRepository } from '../../src/adapters/parse/batch-repository.ts';
import { connectParse } from '../../src/adapters/parse/connection.ts';
import { ParseMemorySink } from '../../src/adapters/parse/memory-sink.ts';
import { ParsePayloadStore } from '../../src/adapters/parse/payload-store.ts';
import { parseClasses } from '../../src/adapters/parse/schema.ts';
import { toMemoryRecord } from '../../src/domain/memory.ts';
import { newBatch, uniqueId } from '../support/batches.ts';
import { printLogsOnFailure, startPostgres, stopAllBackends, type PostgresBackend } from '../support/containers.ts';
import { startParseServer, type ParseServerHandle } from '../support/parse-server.ts';

interface User {
  objectId: string;
  sessionToken: string;
}

interface Answer {
  status: number;
  body: { code?: number; error?: string; results?: Record<string, unknown>[]; [field: string]: unknown };
}

let postgres: PostgresBackend;
let parse: ParseServerHandle;

afterAll(async () => {
  await parse?.stop();
  await stopAllBackends();
});
printLogsOnFailure(() => [postgres]);

/** A REST call as a Parse client: the app id and, when given, a session token; never the master key. */
async function asUser(sessionToken: string | undefined, method: string, path: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = { 'X-Parse-Application-Id': parse.appId, 'Content-Type': 'application/json' };
  if (sessionToken) headers['X-Parse-Session-Token'] = sessionToken;
  const response = await fetch(parse.serverURL + path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Answer['body'] };
}

async function asMaster<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(parse.serverURL + path, {
    method,
    headers: { 'X-Parse-Application-Id': parse.appId, 'X-Parse-Master-Key': parse.masterKey, 'Content-Type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const answer = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  return answer;
}

async function signUp(): Promise<User> {
  const username = uniqueId('user');
  const password = randomBytes(12).toString('hex');
  await asMaster('POST', '/users', { username, password });
  const login = await asUser(undefined, 'POST', '/login', { username, password });
  expect(login.status).toBe(200);
  return { objectId: login.body.objectId as string, sessionToken: login.body.sessionToken as string };
}

async function objectIdOf(className: string, where: Record<string, unknown>): Promise<string> {
  const { results } = await asMaster<{ results: { objectId: string }[] }>(
    'GET',
    `/classes/${className}?where=${encodeURIComponent(JSON.stringify(where))}`,
  );
  expect(results).toHaveLength(1);
  return results[0]!.objectId;
}

const where = (query: Record<string, unknown>) => `where=${encodeURIComponent(JSON.stringify(query))}`;

describe('Parse ACLs on batchmem objects', () => {
  const organizationA = `acme-${randomBytes(3).toString('hex')}`;
  const organizationB = `globex-${randomBytes(3).toString('hex')}`;
  let owner: User;
  let stranger: User;
  const ids: Record<'batch' | 'memory' | 'itemError' | 'payloadFile' | 'segment' | 'version', string> = {} as never;
  let batchKey: string;
  let payloadKey: string;

  beforeAll(async () => {
    postgres = await startPostgres();
    parse = await startParseServer({ databaseURI: postgres.url, organizations: [organizationA, organizationB] });
    const connection = connectParse(parse);
    owner = await signUp();
    stranger = await signUp();
    // Role membership is the Parse administrator's business; here each user joins its organization's role.
    for (const [user, organization] of [[owner, organizationA], [stranger, organizationB]] as const) {
      const roleId = await objectIdOf('_Role', { name: organizationRoleName(organization) });
      await asMaster('PUT', `/roles/${roleId}`, {
        users: { __op: 'AddRelation', objects: [{ __type: 'Pointer', className: '_User', objectId: user.objectId }] },
      });
    }

    const tenant = { organization: organizationA, namespace: 'ns', user: owner.objectId, workspace: 'ws' };
    const batch = newBatch({
      tenant,
      webhook: { url: 'https://example.com/hook', secret: 'whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=', delivered: false, attempts: 0, lastError: null },
    });
    batchKey = batch.key;
    const repository = new ParseBatchRepository(connection);
    await repository.create(batch);
    await repository.update(batch.key, 1, { status: 'processing' });
    await repository.recordSegment(batch.key, { segment: 0, succeeded: 1, failed: 1, written: { created: 1, updated: 0, unchanged: 0 } }, [{ index: 1, externalId: 'e1', error: 'rejected' }], 'w');
    await new ParseMemorySink(connection).writeSegment([toMemoryRecord(batch.key, tenant, 0, { content: 'a private memory' })]);
    payloadKey = `${encodeURIComponent(organizationA)}/${uniqueId('upload')}/segment-000001.zst`;
    const body = randomBytes(64);
    await new ParsePayloadStore(connection).put(payloadKey, body, {
      sha256Hex: createHash('sha256').update(body).digest('hex'),
      contentType: 'application/octet-stream',
      contentEncoding: 'zstd',
    });

    ids.batch = await objectIdOf(parseClasses.batch, { batchId: batchKey });
    ids.memory = await objectIdOf(parseClasses.memory, { batchId: batchKey });
    ids.itemError = await objectIdOf(parseClasses.itemError, { batchId: batchKey });
    ids.segment = await objectIdOf(parseClasses.segment, { batchId: batchKey });
    ids.version = await objectIdOf(parseClasses.version, { batchId: batchKey });
    ids.payloadFile = await objectIdOf(parseClasses.payloadFile, { key: payloadKey });
  });

  const userVisible = [
    ['batch', parseClasses.batch],
    ['memory', parseClasses.memory],
    ['itemError', parseClasses.itemError],
    ['payloadFile', parseClasses.payloadFile],
  ] as const;
  const internal = [
    ['segment', parseClasses.segment],
    ['version', parseClasses.version],
  ] as const;

  it.each(userVisible)('lets the owner read its %s object', async (name, className) => {
    const got = await asUser(owner.sessionToken, 'GET', `/classes/${className}/${ids[name]}`);
    expect(got.status).toBe(200);
    expect(got.body.objectId).toBe(ids[name]);
    const listed = await asUser(owner.sessionToken, 'GET', `/classes/${className}?${where({ objectId: ids[name] })}`);
    expect(listed.body.results?.map((r) => r.objectId)).toEqual([ids[name]]);
  });

  it('never shows the webhook secret to a user, not even the owner', async () => {
    const got = await asUser(owner.sessionToken, 'GET', `/classes/${parseClasses.batch}/${ids.batch}`);
    expect(got.body.batchId).toBe(batchKey);
    expect(got.body).not.toHaveProperty('webhookSecret');
  });

  it.each([...userVisible, ...internal])('hides the %s object from a user of another organization', async (name, className) => {
    const got = await asUser(stranger.sessionToken, 'GET', `/classes/${className}/${ids[name]}`);
    // Not found (the ACL) for the classes users may read, forbidden (the class-level permissions) for the others.
    const readable = userVisible.some(([visible]) => visible === name);
    expect(got.status).toBe(readable ? 404 : 400);
    expect(got.body.code).toBe(readable ? 101 : 119);
    const listed = await asUser(stranger.sessionToken, 'GET', `/classes/${className}?limit=1000`);
    expect(listed.body.results?.map((r) => r.objectId) ?? []).not.toContain(ids[name]);
    const counted = await asUser(stranger.sessionToken, 'GET', `/classes/${className}?count=1&limit=0&${where({ objectId: ids[name] })}`);
    expect(counted.body.count ?? 0).toBe(0);
  });

  it.each([...userVisible, ...internal])('refuses changes to the %s object by a user of another organization', async (name, className) => {
    const before = await asMaster<Record<string, unknown>>('GET', `/classes/${className}/${ids[name]}`);
    const changed = await asUser(stranger.sessionToken, 'PUT', `/classes/${className}/${ids[name]}`, { workspace: 'taken' });
    expect(changed.status).toBeGreaterThanOrEqual(400);
    const deleted = await asUser(stranger.sessionToken, 'DELETE', `/classes/${className}/${ids[name]}`);
    expect(deleted.status).toBeGreaterThanOrEqual(400);
    expect(await asMaster('GET', `/classes/${className}/${ids[name]}`)).toEqual(before);
  });

  it('lets nobody without a session read or list anything', async () => {
    for (const [name, className] of [...userVisible, ...internal]) {
      const got = await asUser(undefined, 'GET', `/classes/${className}/${ids[name]}`);
      expect(got.status).toBeGreaterThanOrEqual(400);
      const listed = await asUser(undefined, 'GET', `/classes/${className}`);
      expect(listed.body.results ?? []).toEqual([]);
    }
  });

  it('keeps the ledger and version rows to the master key, even for the owner', async () => {
    for (const [name, className] of internal) {
      const got = await asUser(owner.sessionToken, 'GET', `/classes/${className}/${ids[name]}`);
      expect(got.status).toBeGreaterThanOrEqual(400);
    }
  });

  it('does not let the owner rewrite its batch either: writes belong to the service', async () => {
    const changed = await asUser(owner.sessionToken, 'PUT', `/classes/${parseClasses.batch}/${ids.batch}`, { status: 'completed' });
    expect(changed.status).toBeGreaterThanOrEqual(400);
    const stored = await asMaster<{ status: string }>('GET', `/classes/${parseClasses.batch}/${ids.batch}`);
    expect(stored.status).toBe('processing');
  });
});
