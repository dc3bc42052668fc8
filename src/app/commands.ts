// The `batchmem` command's subcommands: serve, worker, submit, status, results, migrate, keys. `cli.ts` runs them.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.ts';
import { keysUsage, runKeysCommand } from './keys-command.ts';
import type { AdapterDecorators } from './wire.ts';

const usage = `usage: batchmem <command> [options]

commands:
  serve                          start the API (and, on embedded defaults, the in-process worker)
  worker                         start a Temporal worker (BATCHMEM_ORCHESTRATOR=temporal)
  submit <file.ndjson|file.json> [--watch] [--url http://localhost:8787] [--key KEY] [--batch-id ID]
                                 submit a batch file; --watch follows its progress
  status <id> [--url ...] [--key KEY]
                                 print a batch
  results <id> [-o FILE] [--errors] [--url ...] [--key KEY]
                                 download every item's outcome as NDJSON (--errors: only those that did not
                                 succeed), with a progress bar; resumes after a dropped connection
  migrate                        create what the configured backends need
${keysUsage}

The API key for submit, status and results comes from --key or BATCHMEM_API_KEY.`;

async function main(argv: string[], decorate?: AdapterDecorators): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { startServer } = await import('./server.ts');
      const server = await startServer(loadConfig(), decorate);
      const stop = async (signal: string) => {
        server.logger.info({ signal }, 'shutting down');
        await server.close();
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
      return new Promise<number>(() => {});
    }
    case 'worker': {
      const { runWorkerCommand } = await import('./worker-command.ts');
      return runWorkerCommand(loadConfig(), decorate);
    }
    case 'migrate': {
      const { migrate } = await import('./migrate.ts');
      return migrate(loadConfig());
    }
    case 'keys':
      return runKeysCommand(rest, process.env, process.stdout, process.stderr);
    case 'submit':
    case 'status':
    case 'results': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          url: { type: 'string', default: process.env.BATCHMEM_URL ?? 'http://localhost:8787' },
          key: { type: 'string', default: process.env.BATCHMEM_API_KEY },
          watch: { type: 'boolean', default: false },
          'batch-id': { type: 'string' },
          output: { type: 'string', short: 'o' },
          errors: { type: 'boolean', default: false },
        },
      });
      const target = positionals[0];
      if (!target || !values.key) {
        process.stderr.write(`${command} needs ${target ? 'an API key (--key or BATCHMEM_API_KEY)' : 'an argument'}\n\n${usage}\n`);
        return 2;
      }
      const client = await import('./client-commands.ts');
      const options = { url: values.url!, key: values.key, watch: values.watch!, batchId: values['batch-id'] };
      if (command === 'results') return client.downloadResults(target, { ...options, output: values.output, errorsOnly: values.errors! });
      return command === 'submit' ? client.submitFile(target, options) : client.printStatus(target, options);
    }
    default:
      process.stderr.write(`${usage}\n`);
      return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }
}

/**
 * Runs one command and exits the process with its code (0 done, 1 failed, 2 misuse). `decorate` wraps the configured
 * adapters of `serve` and `worker`; only a test harness passes it.
 */
export function runCli(argv: string[], decorate?: AdapterDecorators): void {
  main(argv, decorate).then(
    (code) => process.exit(code),
    (error: unknown) => {
      // A mistyped option is the user's slip, not a crash: say which one and show the usage, exit 2 like other misuse.
      if ((error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS_')) {
        process.stderr.write(`${(error as Error).message}\n\n${usage}\n`);
        process.exit(2);
      }
      process.stderr.write(error instanceof ConfigError ? `${error.message}\n` : `${(error as Error).stack ?? error}\n`);
      process.exit(1);
    },
  );
}
