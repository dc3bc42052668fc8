// The alert rules pass Prometheus's own checks: `promtool check rules` on deploy/prometheus/alerts.yml, and
// `promtool test rules` on its unit tests, where each alert fires from a synthetic series and stays silent on a
// healthy one. promtool comes from Debian's `prometheus` package (.ci/run installs it).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const rulesDir = join(root, 'deploy', 'prometheus');

async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: rulesDir });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { code: number | string; stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT') throw new Error('promtool is not installed: apt-get install prometheus (Debian), as .ci/run does');
    return { code: Number(failure.code), output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

const alertNames = [...readFileSync(join(rulesDir, 'alerts.yml'), 'utf8').matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1]!);

describe('alert rules', () => {
  it('pass promtool check rules', async () => {
    const { code, output } = await promtool('check', 'rules', 'alerts.yml');
    expect(output).toContain(`SUCCESS: ${alertNames.length} rules found`);
    expect(code).toBe(0);
  });

  it('pass their promtool unit tests', async () => {
    const { code, output } = await promtool('test', 'rules', 'alerts.test.yml');
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });

  it('have, for every alert, a test that fires it, a test that keeps it silent, and a runbook section', () => {
    expect(alertNames.length).toBeGreaterThanOrEqual(5);
    const tests = readFileSync(join(rulesDir, 'alerts.test.yml'), 'utf8').split(/\n  - name: /).slice(1);
    const runbook = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');
    for (const alert of alertNames) {
      const own = tests.filter((test) => test.includes(`alertname: ${alert}\n`));
      expect(own.some((test) => /exp_alerts:\n\s+- exp_labels/.test(test)), `${alert} fires somewhere`).toBe(true);
      expect(own.some((test) => test.includes('exp_alerts: []')), `${alert} stays silent somewhere`).toBe(true);
      expect(runbook, `docs/operations.md has a section for ${alert}`).toContain(`### ${alert}`);
    }
  });

  it('fail promtool when an alert no longer fires as its test expects (the tests can fail)', async () => {
    // The same rules with every threshold raised a millionfold: the firing tests must now fail.
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'batchmem-alerts-'));
    try {
      const raised = readFileSync(join(rulesDir, 'alerts.yml'), 'utf8').replace(/ > ([0-9.]+)(\s*(?:and|\n))/g, (_, value: string, rest: string) => ` > ${Number(value) * 1e6 + 1e6}${rest}`);
      writeFileSync(join(dir, 'alerts.yml'), raised);
      writeFileSync(join(dir, 'alerts.test.yml'), readFileSync(join(rulesDir, 'alerts.test.yml')));
      const { stdout, stderr } = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir }).catch((e: { stdout: string; stderr: string }) => e);
      const output = stdout + stderr;
      for (const alert of alertNames) expect(output, `${alert}'s firing test fails`).toContain(`alertname: ${alert}`);
      expect(output).toContain('FAILED');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
