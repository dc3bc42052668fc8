// Four Vitest projects: `unit` needs no Docker (its workflow tests run the Temporal CLI binary that
// `npm run test:images` builds into .cache/gobin); `contract`, `e2e` and `reliability` need a Docker engine and the
// images from `npm run test:images`. `npm test` runs them all; `npm run test:unit` runs the unit project only.
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

// Testcontainers' reaper image cannot be pulled here; the harness and its global setup clean up instead.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

function dockerProject(name: string, groupOrder: number): TestProjectInlineConfiguration {
  return {
    extends: true,
    test: {
      name,
      include: [`test/${name}/**/*.test.ts`],
      globalSetup: ['test/support/global-setup.ts'],
      // Containers take seconds to start and fault tests restart them; the machines have 2 cores.
      testTimeout: 300_000,
      hookTimeout: 300_000,
      fileParallelism: false,
      // Run the Docker projects one after another, never side by side.
      sequence: { groupOrder },
    },
  };
}

export default defineConfig({
  test: {
    env: { TESTCONTAINERS_RYUK_DISABLED: 'true' },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } } },
      dockerProject('contract', 1),
      dockerProject('e2e', 2),
      dockerProject('reliability', 3),
    ],
  },
});
