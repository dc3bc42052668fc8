import { describe, expect, it } from 'vitest';
import { batchKey, batchStatuses, canTransition, isFinal, transition, type BatchStatus } from '../../src/domain/batch.ts';

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
