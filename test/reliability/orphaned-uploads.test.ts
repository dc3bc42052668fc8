// Uploads whose process died: `batchmem serve` is SIGKILLed while a client uploads a batch, after some of its segments
// are in the payload store. No batch points at those segments (a batch is recorded when its upload completes), so
// only the orphan sweep can delete them. Restarted with a short BATCHMEM_ORPHAN_GRACE, the server must delete them,
// keep every segment of a batch that completed before the kill (it still reads back), and leave alone a live upload
// that a second process sharing the same data folder is receiving meanwhile (it then completes in full).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FilePayloadStore } from '../../src/adapters/local/payload-store.ts';
import { segmentKey } from '../../src/domain/codec.ts';
import { apiClient, memory, ndjsonStream } from '../support/api-client.ts';
import { uniqueId } from '../support/batches.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { gate, heldBody } from '../support/streamed-upload.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';

const segmentItems = 100;
const graceMs = 6_000;

/** A body that sends one segment's worth of lines every `everyMs` until `finish` opens, then the rest at once. */
function tricklingBody(count: number, everyMs: number, finish: Promise<void>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let next = 0;
  let finishing = false;
  void finish.then(() => (finishing = true));
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next >= count) return controller.close();
      if (!finishing) await Promise.race([sleep(everyMs), finish]);
      const end = finishing ? Math.min(count, next + 1000) : Math.min(count, next + segmentItems);
      const lines: string[] = [];
      for (; next < end; next += 1) lines.push(JSON.stringify(memory(next, 'live')));
      controller.enqueue(encoder.encode(lines.join('\n') + '\n'));
    },
  });
}

describe('segments of an upload whose server was killed are swept after the grace period', () => {
  const keys = testKeys();
  const dir = tempDir();
  const payloads = join(dir.path, 'payloads');
  const organizationFolder = join(payloads, encodeURIComponent(keys[0]!.organization));
  let first: ServerProcess;
  let second: ServerProcess | undefined;
  let restarted: ServerProcess | undefined;

  const uploadFolders = () => {
    try {
      return readdirSync(organizationFolder).sort();
    } catch {
      return [];
    }
  };
  const segmentFiles = (folder: string) => {
    try {
      return readdirSync(join(organizationFolder, folder)).filter((name) => name.startsWith('segment-') && !name.includes('.tmp') && !name.endsWith('.sha256')).sort();
    } catch {
      return [];
    }
  };
  /** Every file of a folder with the SHA-256 of its bytes, to prove nothing in it changed. */
  const fingerprint = (folder: string) =>
    readdirSync(join(organizationFolder, folder))
      .sort()
      .map((name) => `${name}:${createHash('sha256').update(readFileSync(join(organizationFolder, folder, name))).digest('hex')}`);
  const env = (grace: string) => ({
    ...commonEnv(keys),
    BATCHMEM_DATA_DIR: dir.path,
    BATCHMEM_SEGMENT_MAX_ITEMS: String(segmentItems),
    BATCHMEM_ORPHAN_GRACE: grace,
  });

  beforeAll(async () => {
    first = await serverProcess(env('1h'));
    await first.start();
  });

  afterAll(async () => {
    await restarted?.kill();
    await second?.kill();
    await first?.kill();
    dir.remove();
  });

  it('deletes the dead upload, keeps a completed batch and a live upload of another process', { timeout: 55_000 }, async () => {
    const startedAt = Date.now();
    const api = apiClient(first.url, keys[0]!.key);

    // A batch that completes before the kill: its payload must survive every sweep.
    const keptId = uniqueId('kept');
    const kept = await api.submitNdjson(ndjsonStream(500, (i) => memory(i, 'kept')), `?batch_id=${keptId}`);
    expect(kept.status, await kept.clone().text()).toBe(202);
    expect((await api.waitForFinal(keptId, 30_000)).status).toBe('completed');
    const [keptFolder] = uploadFolders();
    expect(uploadFolders()).toHaveLength(1);
    expect(segmentFiles(keptFolder!)).toHaveLength(5);
    const keptFiles = fingerprint(keptFolder!);

    // A second process on the same data folder, with the default grace (it sweeps too, and must spare the upload).
    second = await serverProcess(env('1h'));
    await second.start();

    // The upload that dies: 3,000 lines sent, the rest held back, so its process stores segments and waits.
    const never = gate();
    const dying = api
      .submitNdjson(heldBody(5_000, (i) => JSON.stringify(memory(i, 'dying')), 3_000, never.opened), `?batch_id=${uniqueId('dying')}`)
      .catch((error: unknown) => error); // the server dies under it
    await expect.poll(() => uploadFolders().length, { timeout: 15_000 }).toBe(2);
    const deadFolder = uploadFolders().find((folder) => folder !== keptFolder)!;
    await expect.poll(() => segmentFiles(deadFolder).length, { timeout: 15_000 }).toBeGreaterThanOrEqual(20);
    await first.kill();
    await dying;
    const orphaned = segmentFiles(deadFolder).length;
    expect(orphaned).toBeGreaterThanOrEqual(20);
    // Nothing deleted it while no process swept with a short grace.
    const deadWrittenAt = statSync(join(organizationFolder, deadFolder)).mtimeMs;

    // A live upload on the second process: one segment every 500 ms, well inside the grace period.
    const finish = gate();
    const liveId = uniqueId('live');
    const liveTotal = 4_000;
    const secondApi = apiClient(second.url, keys[0]!.key);
    const live = secondApi.submitNdjson(tricklingBody(liveTotal, 500, finish.opened), `?batch_id=${liveId}`);
    live.catch(() => undefined); // awaited below; a failure before then must not go unhandled
    await expect.poll(() => uploadFolders().length, { timeout: 15_000 }).toBe(3);
    const liveFolder = uploadFolders().find((folder) => folder !== keptFolder && folder !== deadFolder)!;

    // The dead upload is older than the grace period by the time the restarted server sweeps.
    await sleep(Math.max(0, deadWrittenAt + graceMs + 200 - Date.now()));
    restarted = await serverProcess(env(`${graceMs / 1000}s`));
    await restarted.start();
    await expect.poll(() => segmentFiles(deadFolder).length, { timeout: 15_000 }).toBe(0);
    expect(uploadFolders()).not.toContain(deadFolder);
    await expect.poll(() => restarted!.output(), { timeout: 10_000 }).toMatch(/orphaned upload sweep done/);
    const deletion = restarted
      .output()
      .split('\n')
      .find((line) => line.includes(deadFolder) && line.includes('no batch points at'));
    expect(deletion, restarted.output().slice(-3000)).toBeDefined();
    expect(JSON.parse(deletion!)).toMatchObject({ prefix: `${encodeURIComponent(keys[0]!.organization)}/${deadFolder}`, objects: orphaned });
    // Never the API keys in a log line.
    for (const { key } of keys) expect(restarted.output()).not.toContain(key);
    const metrics = await (await fetch(`${restarted.url}/metrics`)).text();
    expect(metrics).toMatch(/^batchmem_orphaned_uploads_deleted_total 1$/m);

    // Through at least one more periodic sweep, the live upload keeps every segment it stored and goes on growing.
    const liveBefore = segmentFiles(liveFolder).length;
    expect(liveBefore).toBeGreaterThan(0);
    await sleep(graceMs + 1_500);
    const liveAfter = segmentFiles(liveFolder);
    expect(liveAfter.length).toBeGreaterThan(liveBefore);
    expect(liveAfter.slice(0, liveBefore)).toEqual(Array.from({ length: liveBefore }, (_, i) => segmentKey('x', i, 'zstd').slice(2)));
    finish.open();
    const liveAnswer = await live;
    expect(liveAnswer.status, await liveAnswer.clone().text()).toBe(202);
    const liveDone = await secondApi.waitForFinal(liveId, 30_000);
    expect(liveDone.status).toBe('completed');
    expect(liveDone.request_counts).toMatchObject({ total: liveTotal, succeeded: liveTotal, failed: 0 });

    // The completed batch: every file as it was, each segment reads back through the store with its checksum.
    expect(fingerprint(keptFolder!)).toEqual(keptFiles);
    const store = new FilePayloadStore(payloads);
    const prefix = `${encodeURIComponent(keys[0]!.organization)}/${keptFolder}`;
    for (let segment = 0; segment < 5; segment += 1) expect(await store.get(segmentKey(prefix, segment, 'zstd'))).toBeDefined();
    const keptBatch = await apiClient(restarted.url, keys[0]!.key).get(keptId);
    expect(keptBatch.status).toBe('completed');
    expect(keptBatch.request_counts).toMatchObject({ total: 500, succeeded: 500, failed: 0 });
    console.info(`[orphaned uploads] ${orphaned} orphaned segments deleted; whole test ${Date.now() - startedAt} ms`);
  });
});
