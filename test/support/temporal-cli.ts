// The Temporal CLI binary that `npm run test:images` builds for the Temporal image (scripts/build-images.sh keeps
// it under .cache/gobin/temporal@<version>/). Unit tests run workflow code against its dev server through
// TestWorkflowEnvironment.createLocal, so nothing is downloaded. When only the image is there (built elsewhere),
// the binary is copied out of it. Missing both, this throws and says how to get it: never a skip.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const repoRoot = join(import.meta.dirname, '../..');
const cache = join(repoRoot, '.cache');

export function temporalCliPath(): string {
  const fromEnv = process.env.BATCHMEM_TEMPORAL_CLI;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`BATCHMEM_TEMPORAL_CLI names ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  const built = existsSync(join(cache, 'gobin'))
    ? readdirSync(join(cache, 'gobin')).filter((dir) => dir.startsWith('temporal@')).map((dir) => join(cache, 'gobin', dir, 'temporal'))
    : [];
  const found = built.find((path) => existsSync(path));
  if (found) return found;
  return copiedFromImage();
}

function copiedFromImage(): string {
  const hint = 'Run `npm run test:images` (it builds the Temporal CLI from source and keeps it in .cache/gobin).';
  let image: string | undefined;
  try {
    image = (JSON.parse(readFileSync(join(cache, 'images.json'), 'utf8')) as { temporal?: string }).temporal;
  } catch {
    throw new Error(`No Temporal CLI under .cache/gobin and no image manifest. ${hint}`);
  }
  if (!image) throw new Error(`No Temporal image in .cache/images.json. ${hint}`);
  const target = join(cache, 'temporal-cli', image.replace(/[^A-Za-z0-9_.-]/g, '_'));
  const binary = join(target, 'temporal');
  if (existsSync(binary)) return binary;
  mkdirSync(target, { recursive: true });
  const container = execFileSync('docker', ['create', image], { encoding: 'utf8' }).trim();
  try {
    execFileSync('docker', ['cp', `${container}:/usr/local/bin/temporal`, binary]);
  } finally {
    execFileSync('docker', ['rm', container]);
  }
  return binary;
}
