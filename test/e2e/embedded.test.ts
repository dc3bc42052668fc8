// The end-to-end suite on embedded defaults (SQLite, files, in-process runner), plus a crash in the middle of a batch
// the processing thread's CPU priority, and the upload thread.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCounts, apiClient, ndjsonStream } from '../support/api-client.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { commonEnv, httpEndToEndSuite, testKeys } from './http.suite.ts';

httpEndToEndSuite(
  'embedded defaults',
  async () => {
    const dir = tempDir();
    return { env: { BATCHMEM_DATA_DIR: dir.path }, close: async () => dir.remove() };
  },
  { json: 10_000, ndjson: 100_000 },
);

describe('embedded defaults: a crash in the middle of a batch', () => {
  const keys = testKeys();
  const dir = tempDir();
  let server: ServerProcess;
  beforeAll(async () => {
    // Small segments processed one at a time, so the kill lands mid-batch.
    server = await serverProcess({
      ...commonEnv(keys),
      BATCHMEM_DATA_DIR: dir.path,
      BATCHMEM_SEGMENT_MAX_ITEMS: '200',
      BATCHMEM_SEGMENT_CONCURRENCY: '1',
    });
    await server.start();
  });
  afterAll(async () => {
    await server.stop();
    dir.remove();
  });

  it('completes after SIGKILL and restart, with every memory stored exactly once', async () => {
    const api = apiClient(server.url, keys[0]!.key);
    const total = 60_000;
    expect((await api.submitNdjson(ndjsonStream(total), '?batch_id=crashy')).status).toBe(202);
    const before = await api.waitFor('crashy', (b) => b.request_counts.processed > 0);
    expect(before.request_counts.processed).toBeLessThan(total);
    await server.kill();
    await server.start();
    const done = await api.waitForFinal('crashy');
    expect(done.status).toBe('completed');
    expectCounts(done.request_counts, { total, processed: total, succeeded: total, failed: 0, expired: 0 });
    const results = await api.all<{ index: number; memory_id: string }>('/v1/batch/crashy/results');
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(new Set(results.map((r) => r.memory_id)).size).toBe(total);
    expect(server.output()).toContain('resumed unfinished batches');
  });
});

describe('embedded defaults: start-up', () => {
  it('logs a warning, and still serves, when BATCHMEM_TENANT_CONCURRENCY leaves no slot to other organizations', async () => {
    const keys = testKeys();
    const dir = tempDir();
    const server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dir.path, BATCHMEM_BATCH_CONCURRENCY: '4', BATCHMEM_TENANT_CONCURRENCY: '9' });
    try {
      await server.start();
      const warnings = server
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { level: number; msg: string; tenantConcurrency?: number })
        .filter((entry) => entry.level === 40 && entry.msg.includes('BATCHMEM_TENANT_CONCURRENCY'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ tenantConcurrency: 9 });
      expect(warnings[0]!.msg).toContain('BATCHMEM_TENANT_CONCURRENCY=9 is above BATCHMEM_BATCH_CONCURRENCY=4 (it is cut to 4)');
      expect((await apiClient(server.url, keys[0]!.key).request('/v1/batch')).status).toBe(200);
    } finally {
      await server.stop();
      dir.remove();
    }
  });
});

describe('embedded defaults: the processing and upload threads', () => {
  const keys = testKeys();
  const dirs = [tempDir(), tempDir(), tempDir(), tempDir()];
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) dir.remove();
  });

  /**
   * Each live thread of a process by name (Linux: /proc/<pid>/task/<tid>/comm) with its nice value (stat field 19)
   * and the CPU it used in clock ticks (utime + stime, fields 14 and 15).
   */
  function threads(pid: number): { name: string; nice: number; cpu: number }[] {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return [{ name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), nice: Number(fields[16]), cpu: Number(fields[11]) + Number(fields[12]) }];
      } catch {
        return [];
      }
    });
  }

  it('runs at the HTTP thread\'s CPU priority by default, and lower with BATCHMEM_PROCESSING_NICE', async () => {
    for (const [i, nice] of [undefined, '10'].entries()) {
      const server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dirs[i]!.path, ...(nice ? { BATCHMEM_PROCESSING_NICE: nice } : {}) });
      servers.push(server);
      await server.start();
      const all = threads(server.pid()!);
      const main = all.find((t) => t.name === 'MainThread');
      const processing = all.filter((t) => t.name === 'processing');
      expect(processing, JSON.stringify(all)).toHaveLength(1);
      expect(processing[0]!.nice - main!.nice).toBe(nice === '10' ? 10 : 0);
      // It still does the work.
      const api = apiClient(server.url, keys[0]!.key);
      expect((await api.submitNdjson(ndjsonStream(50), `?batch_id=niced-${i}`)).status).toBe(202);
      expect((await api.waitForFinal(`niced-${i}`)).status).toBe('completed');
    }
  });

  it('reads and checks uploads on the upload thread, so the HTTP thread only moves their bytes; the thread ends when idle', async () => {
    const server = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dirs[2]!.path });
    servers.push(server);
    await server.start();
    const uploadThreads = () => threads(server.pid()!).filter((t) => t.name === 'upload');
    const cpuOf = (name: string) => threads(server.pid()!).filter((t) => t.name === name).reduce((sum, t) => sum + t.cpu, 0);
    // Started by the first upload, not before.
    expect(uploadThreads()).toHaveLength(0);
    const api = apiClient(server.url, keys[0]!.key);
    const before = cpuOf('MainThread');
    expect((await api.submitNdjson(ndjsonStream(40_000), '?batch_id=on-the-upload-thread')).status).toBe(202);
    const used = { http: cpuOf('MainThread') - before, upload: cpuOf('upload') };
    expect(uploadThreads()).toHaveLength(1);
    // Parsing, checking and serializing 40,000 memories is the upload's bulk; the HTTP thread's share is the bytes.
    expect(used.upload, JSON.stringify(used)).toBeGreaterThan(used.http);
    expect((await api.waitForFinal('on-the-upload-thread')).request_counts.succeeded).toBe(40_000);
    // Ended 5 s after its last upload (its memory is not held while nothing arrives).
    for (let waited = 0; uploadThreads().length > 0 && waited < 30_000; waited += 250) await new Promise((resolve) => setTimeout(resolve, 250));
    expect(uploadThreads()).toHaveLength(0);
    expect(server.output()).not.toContain('the upload thread stopped');

    const inline = await serverProcess({ ...commonEnv(keys), BATCHMEM_DATA_DIR: dirs[3]!.path, BATCHMEM_UPLOAD_THREAD: 'false' });
    servers.push(inline);
    await inline.start();
    expect(threads(inline.pid()!).filter((t) => t.name === 'upload')).toHaveLength(0);
    const inlineApi = apiClient(inline.url, keys[0]!.key);
    expect((await inlineApi.submitNdjson(ndjsonStream(50), '?batch_id=inline')).status).toBe(202);
    expect((await inlineApi.waitForFinal('inline')).status).toBe('completed');
  });
});
