import { describe, expect, it } from 'vitest';
import { defaultMemoryLimits, memoryId, memoryItemSchema, validateMemoryItem } from '../../src/domain/memory.ts';

const schema = memoryItemSchema({ ...defaultMemoryLimits, maxContentBytes: 100, maxMetadataBytes: 200, maxMetadataDepth: 3 });
const check = (value: unknown) => validateMemoryItem(schema, value, 7);

describe('memory item schema', () => {
  it('accepts a full item', () => {
    expect(check({ content: 'hello', type: 'note', metadata: { a: [1, { b: 2 }] }, external_id: 'x' }).ok).toBe(true);
  });

  it.each([
    ['missing content', {}],
    ['empty content', { content: '' }],
    ['whitespace content', { content: ' \n\t ' }],
    ['content over the byte limit', { content: 'é'.repeat(51) }],
    ['a number for content', { content: 42 }],
    ['an unknown field', { content: 'x', colour: 'red' }],
    ['metadata that is an array', { content: 'x', metadata: [1] }],
    ['metadata nested too deep', { content: 'x', metadata: { a: { b: { c: { d: 1 } } } } }],
    ['metadata over the byte limit', { content: 'x', metadata: { a: 'y'.repeat(300) } }],
    ['a constructor key in metadata', { content: 'x', metadata: { nested: { constructor: 1 } } }],
    ['a __proto__ key in metadata', JSON.parse('{"content":"x","metadata":{"__proto__":{"polluted":true}}}')],
    ['a __proto__ key on the item', JSON.parse('{"content":"x","__proto__":{"a":1}}')],
    ['an array', [1, 2]],
    ['a string', 'just text'],
  ])('rejects %s, naming the item index', (_name, value) => {
    const result = check(value);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatchObject({ kind: 'invalid_item', index: 7 });
  });

  it('derives memory ids from batch and index only', () => {
    expect(memoryId('k', 1)).toBe(memoryId('k', 1));
    expect(memoryId('k', 1)).not.toBe(memoryId('k', 2));
    expect(memoryId('k1', 1)).not.toBe(memoryId('k', 11));
  });
});
