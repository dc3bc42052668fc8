// The `batchmem` command's answer to misuse: an unknown option names itself and shows the usage (exit 2), never a
// stack trace.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'batchmem.js');

function run(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('batchmem command misuse', () => {
  it.each([
    ['keys', 'list', '--help'],
    ['status', 'some-batch', '--bogus'],
  ])('answers an unknown option (%s %s %s) with its name and the usage, exit 2', (...args) => {
    const result = run(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`Unknown option '${args[2]}'`);
    expect(result.stderr).toContain('usage: batchmem <command>');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
