// Test-only entry point: the real `batchmem` command, with the fault-injecting decorators of decorators.ts around
// the configured adapters. `serverProcess` runs it instead of src/app/cli.ts when a test sets any BATCHMEM_FAULT_*
// variable.
import { runCli } from '../../../src/app/commands.ts';
import { adapterDecorators } from './decorators.ts';

runCli(process.argv.slice(2), adapterDecorators());
