// The arrows point one way: drivers -> application -> domain <- ports <- adapters. Read from the source's own
// import statements (static, dynamic and type-only alike), so a new import that runs against them fails here.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');

function sourcesUnder(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourcesUnder(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const specifier = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

/** The project files a source file imports, as paths from the repository root (packages and built-ins left out). */
export function projectImports(file: string, text: string): string[] {
  return [...text.matchAll(specifier)]
    .map((match) => match[1]!)
    .filter((target) => target.startsWith('.'))
    .map((target) => relative(root, resolve(root, dirname(file), target)));
}

function arrows(fromDir: string): string[] {
  return sourcesUnder(fromDir).flatMap((file) =>
    projectImports(file, readFileSync(join(root, file), 'utf8')).map((target) => `${file} -> ${target}`),
  );
}

const into = (dir: string) => (arrow: string) => arrow.split(' -> ')[1]!.startsWith(dir);

describe('import graph', () => {
  it('reads static, dynamic and type-only imports (the check itself can fail)', () => {
    const text = [
      "import type { Services } from '../../app/services.ts';",
      "import { x } from './y.ts';",
      "const { Z } = await import('../../app/wire.ts');",
      "import 'node:fs';",
    ].join('\n');
    expect(projectImports('src/adapters/local/a.ts', text)).toEqual([
      'src/app/services.ts',
      'src/adapters/local/y.ts',
      'src/app/wire.ts',
    ]);
  });

  it('has no adapter importing the application', () => {
    expect(arrows('src/adapters').filter(into('src/app/'))).toEqual([]);
  });

  it('has ports that see only the domain', () => {
    expect(arrows('src/ports').filter((arrow) => !into('src/domain/')(arrow) && !into('src/ports/')(arrow))).toEqual([]);
  });

  it('has a domain that imports nothing outside itself', () => {
    expect(arrows('src/domain').filter((arrow) => !into('src/domain/')(arrow))).toEqual([]);
  });
});
