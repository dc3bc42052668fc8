#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=65536 node --max-semi-space-size=2
// Node.js 24 runs the TypeScript sources directly (type stripping); there is no build step.
// A small young generation keeps memory flat while streaming: ingest makes much short-lived garbage, and V8
// would otherwise grow the semi-spaces to their maximum. The flag holds for every thread's isolate, and 2 MiB rather
// than 8 also frees dead request buffers sooner: the HTTP thread, which only moves bytes, allocates little else, so a
// larger young generation filled only after tens of MiB of them (1,000,000 memories: 259-302 -> 219-223 MiB peak, no
// measurable change in throughput or submit latency; docs/benchmarks.md, peak RSS). Two malloc arenas: glibc
// would give the processing thread and libuv's pool arenas of their own, each keeping the memory it once held. A
// fixed mmap threshold of 64 KiB: glibc otherwise raises it to the size of each large block freed, so that the
// megabyte buffers of segments and compression come from the arenas, whose freed memory stays resident (288 -> 254
// MiB peak at 100,000 memories); and at 64 KiB rather than glibc's 128 KiB start, the 64 KiB chunks an upload is
// read in (and copied in, for the upload thread) are mapped and unmapped too, instead of fragmenting the arenas
// (225 -> 198 MiB at 100,000). Both in docs/benchmarks.md, peak RSS.
import '../src/app/cli.ts';
