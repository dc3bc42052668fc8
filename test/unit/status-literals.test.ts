// Status names are spelled only in the domain (src/domain/lifecycle.ts): everywhere else takes them from there, so
// adding or renaming a status cannot leave a stale copy behind. A quoted status name outside src/domain fails this,
// unless its line says why it is another thing with the same name (`// literal: ...`, e.g. a workflow phase).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { batchStatuses } from '../../src/domain/lifecycle.ts';

const root = join(import.meta.dirname, '../..');
const sourceFile = /\.(ts|js|html)$/;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(path);
    return sourceFile.test(entry.name) ? [path] : [];
  });
}

/** `'name'` or `"name"` for any status: code and markup, not prose in backticks. */
export function statusLiteralsIn(text: string): string[] {
  const quoted = new RegExp(`(['"])(${batchStatuses.join('|')})\\1`, 'g');
  return text.split('\n').flatMap((line, index) =>
    line.includes('// literal:') ? [] : [...line.matchAll(quoted)].map((match) => `${index + 1}: ${match[0]}`),
  );
}

describe('status names', () => {
  it('finds a quoted status name (the check itself can fail)', () => {
    expect(statusLiteralsIn(`if (batch.status === 'cancelled') return;\nconst s = "pending";`)).toEqual([
      "1: 'cancelled'",
      '2: "pending"',
    ]);
    expect(statusLiteralsIn("phase = 'processing'; // literal: a workflow phase")).toEqual([]);
  });

  it('appear as literals only under src/domain', () => {
    const found = filesUnder(join(root, 'src'))
      .filter((path) => !relative(root, path).startsWith(join('src', 'domain')))
      .flatMap((path) => statusLiteralsIn(readFileSync(path, 'utf8')).map((hit) => `${relative(root, path)}:${hit}`));
    expect(found).toEqual([]);
  });
});
