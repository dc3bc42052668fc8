import { describe, expect, it } from 'vitest';
import { batchKey, batchStatuses, canTransition, isFinal, transition, type BatchStatus } from '../../src/domain/batch.ts';
import { asInvalidItem, describeInvalidItem, invalidItemLine, readableExternalId } from '../../src/domain/invalid-items.ts';
import { abandonUpload, applyPatch, endUpload, uploadOpen, reopen, uploadProgress } from '../../src/domain/lifecycle.ts';
import { memoryItemSchema } from '../../src/domain/memory.ts';

const legal: [BatchStatus, BatchStatus][] = [
  ['pending', 'processing'],
  ['pending', 'cancelling'],
  ['processing', 'completed'],
  ['processing', 'failed'],
  ['processing', 'cancelling'],
  ['cancelling', 'cancelled'],
  ['pending', 'expired'],
  ['processing', 'expired'],
];

describe('batch lifecycle', () => {
  const pairs = batchStatuses.flatMap((from) => batchStatuses.map((to) => [from, to] as [BatchStatus, BatchStatus]));

  it.each(legal)('allows %s -> %s', (from, to) => {
    expect(transition(from, to)).toEqual({ ok: true, value: to });
  });

  it.each(pairs.filter(([f, t]) => !legal.some(([lf, lt]) => lf === f && lt === t)))(
    'rejects %s -> %s with a typed error',
    (from, to) => {
      expect(canTransition(from, to)).toBe(false);
      expect(transition(from, to)).toEqual({ ok: false, error: { kind: 'illegal_transition', from, to } });
    },
  );

  it('treats completed, failed, cancelled and expired as final and nothing else', () => {
    expect(batchStatuses.filter(isFinal)).toEqual(['completed', 'failed', 'cancelled', 'expired']);
  });

  it('derives different keys for the same id in different organizations', () => {
    expect(batchKey('org-a', 'x')).not.toBe(batchKey('org-b', 'x'));
    expect(batchKey('org-a', 'x')).toBe(batchKey('org-a', 'x'));
    expect(batchKey('a', 'bc')).not.toBe(batchKey('ab', 'c'));
  });
});

describe('streamed upload steps (invalid_items: record)', () => {
  const payload = { codec: 'zstd' as const, prefix: 'org/u1', segments: 1, rawBytes: 10, storedBytes: 5 };
  const stored = { segments: 2, rawBytes: 30, storedBytes: 12, received: 1500 };

  it('grows the payload and the total while the upload is open, and stops once the batch is cancelling, cancelled or expired', () => {
    const step = uploadProgress({ status: 'processing', payload }, stored);
    expect(step).toEqual({ ok: true, value: { payload: { ...payload, segments: 2, rawBytes: 30, storedBytes: 12 }, upload: { complete: false, received: 1500 }, total: 1500 } });
    for (const status of ['cancelling', 'cancelled', 'expired'] as const) {
      expect(uploadProgress({ status, payload }, stored)).toEqual({ ok: false, error: { kind: 'upload_closed', status } });
      expect(endUpload({ status, payload }, stored, 'c0ffee').ok).toBe(false);
    }
    // A batch that ended failed (a failure limit) or completed while its body streamed takes the rest of it: the
    // items never reached stay counted, for a redrive, as with a JSON body.
    for (const status of ['failed', 'completed'] as const) {
      expect(uploadProgress({ status, payload }, stored).ok).toBe(true);
      const ended = endUpload({ status, payload }, stored, 'c0ffee');
      expect(ended.ok && ended.value).toMatchObject({ upload: { complete: true, received: 1500 }, total: 1500 });
      expect(ended.ok && ended.value.status).toBeUndefined();
    }
  });

  it('refuses a redrive while the upload is open: the run would wait on segments that may never come', () => {
    const counts = { total: 1000, processed: 1000, succeeded: 990, failed: 10 };
    expect(reopen({ status: 'failed', counts, upload: { complete: false, received: 1000 } })).toEqual({ ok: false, error: { kind: 'upload_open', status: 'failed' } });
    expect(reopen({ status: 'failed', counts: { ...counts, total: 4000 }, upload: { complete: true, received: 4000 } }).ok).toBe(true);
  });

  it('ends the upload with the final total', () => {
    const step = endUpload({ status: 'processing', payload }, stored, 'c0ffee');
    expect(step.ok && step.value).toMatchObject({ upload: { complete: true, received: 1500, bodySha256: 'c0ffee' }, total: 1500 });
    expect(uploadOpen({ upload: { complete: false, received: 3 } })).toBe(true);
    expect(uploadOpen({ upload: { complete: true, received: 3 } })).toBe(false);
    expect(uploadOpen({})).toBe(false);
  });

  it('cancels an abandoned upload through the lifecycle, keeping what was stored as the total', () => {
    const step = abandonUpload({ status: 'processing', payload }, stored, 'the client went away');
    expect(step.ok && step.value).toMatchObject({ status: 'cancelling', total: 1500, upload: { complete: false, received: 1500 } });
    expect(step.ok && step.value.error).toMatch(/upload ended before the body was complete: the client went away/);
    const dropped = abandonUpload({ status: 'processing', payload }, stored, 'the upload ended before the body was complete');
    expect(dropped.ok && dropped.value.error).toBe('the upload ended before the body was complete');
    const already = abandonUpload({ status: 'cancelling', payload }, stored, 'x');
    expect(already.ok && already.value.status).toBeUndefined();
    expect(abandonUpload({ status: 'completed', payload }, stored, 'x').ok).toBe(false);
  });

  it('applies an upload patch: total moves, the other counters stay', () => {
    const current = { status: 'processing' as BatchStatus, version: 3, counts: { total: 1000, processed: 1000, succeeded: 990, failed: 10 } };
    const next = applyPatch(current, { total: 1500 });
    expect(next.ok && next.value).toEqual({ status: 'processing', version: 4, counts: { total: 1500, processed: 1000, succeeded: 990, failed: 10 } });
  });

  it('marks an invalid item in its segment so that no valid item reads as one', () => {
    const line = invalidItemLine({ externalId: 'e-7', error: 'line 8 is invalid: content must not be empty' });
    expect(asInvalidItem(JSON.parse(line))).toEqual({ externalId: 'e-7', error: 'line 8 is invalid: content must not be empty' });
    expect(asInvalidItem({ content: 'a memory', external_id: 'e-7' })).toBeUndefined();
    expect(memoryItemSchema().safeParse(JSON.parse(line)).success).toBe(false);
    expect(describeInvalidItem('memories.3', [{ path: 'memories.3.content', message: 'Required' }, { path: '', message: 'odd' }])).toBe('memories.3 is invalid: memories.3.content Required; odd');
    expect(readableExternalId({ external_id: 'x' })).toBe('x');
    expect(readableExternalId({ external_id: 3 })).toBeNull();
    expect(readableExternalId('text')).toBeNull();
  });
});
