#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=8
// Node.js 24 runs the TypeScript sources directly (type stripping); there is no build step.
// A small young generation keeps memory flat while streaming: ingest makes much short-lived garbage, and V8
// would otherwise grow the semi-spaces to their maximum (docs/benchmarks.md, peak RSS). Two malloc arenas: glibc
// would give the processing thread and libuv's pool arenas of their own, each keeping the memory it once held. A
// fixed mmap threshold (128 KiB, glibc's default start): glibc otherwise raises it to the size of each large block
// freed, so that the megabyte buffers of segments and compression come from the arenas, whose freed memory stays
// resident (docs/benchmarks.md: 288 -> 254 MiB peak at 100,000 memories).
import '../src/app/cli.ts';
