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

  it('has no circle of imports inside the domain (each module can be read after the ones it names)', () => {
    expect(circles(arrows('src/domain'))).toEqual([]);
    expect(circles(['a.ts -> b.ts', 'b.ts -> c.ts', 'c.ts -> a.ts', 'c.ts -> d.ts'])).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });
});

/** The import circles among `arrows` ("from -> to"), each as its files in the order found (depth-first). */
function circles(arrowList: string[]): string[][] {
  const next = new Map<string, string[]>();
  for (const arrow of arrowList) {
    const [from, to] = arrow.split(' -> ') as [string, string];
    next.set(from, [...(next.get(from) ?? []), to]);
  }
  const found: string[][] = [];
  const done = new Set<string>();
  const visit = (file: string, path: string[]) => {
    const at = path.indexOf(file);
    if (at >= 0) return void found.push(path.slice(at));
    if (done.has(file)) return;
    for (const to of next.get(file) ?? []) visit(to, [...path, file]);
    done.add(file);
  };
  for (const file of [...next.keys()].sort()) visit(file, []);
  return found;
}
