#!/usr/bin/env node
// Node.js 24 runs the TypeScript sources directly (type stripping); there is no build step.
import '../src/app/cli.ts';
