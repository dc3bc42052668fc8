#!/usr/bin/env node
// The `batchmem` command (bin/batchmem.js, the container's entrypoint): runs the command the arguments name.
import { runCli } from './commands.ts';

runCli(process.argv.slice(2));
