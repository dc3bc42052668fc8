// The HTTP sink's delivery ledger as it grows: plan plus settlement (what the processing thread does in SQLite for
// every segment it delivers) in ms per 1,000 memories of the bench corpus, per 50,000 written, up to N (default
// 300,000). `node bench/ledger-growth.ts [N]`; a probe for working on the ledger's layout, not part of `npm run bench`
// (its figures are in docs/benchmarks.md, "The delivery ledger's layout").
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeliveryLedger } from '../src/adapters/http/delivery-ledger.ts';
import { toMemoryRecord } from '../src/domain/memory.ts';
import { corpusMemory } from './corpus.ts';

const total = Number(process.argv[2] ?? 300_000);
const segment = 1000;
const report = 50_000;
const dir = join(tmpdir(), `batchmem-ledger-growth-${process.pid}`);
const ledger = new DeliveryLedger(join(dir, 'ledger.db'));
const tenant = { organization: 'bench', namespace: 'bench', user: 'bench', workspace: 'bench' };
try {
  let totalMs = 0;
  let planMs = 0;
  for (let start = 0; start < total; start += segment) {
    const records = Array.from({ length: segment }, (_, i) => toMemoryRecord('batch_growth', tenant, start + i, corpusMemory(start + i)));
    const startedAt = performance.now();
    const plans = await ledger.plan(records);
    planMs += performance.now() - startedAt;
    await ledger.settle(
      'batch_growth',
      plans.map((p) => ({ memoryId: p.memoryId, batchKey: 'batch_growth', index: p.record.index, externalId: p.record.externalId, attributes: p.record.attributes, sinkId: null })),
      [],
      plans.map((p) => ({ index: p.record.index, memoryId: p.memoryId, externalId: p.record.externalId, outcome: p.outcome })),
    );
    totalMs += performance.now() - startedAt;
    if ((start + segment) % report === 0) {
      const per = (ms: number) => ((ms / report) * 1000).toFixed(1);
      console.log(`${start + segment} rows: ${per(totalMs)} ms per 1,000 (plan ${per(planMs)}, settlement ${per(totalMs - planMs)})`);
      totalMs = 0;
      planMs = 0;
    }
  }
} finally {
  ledger.close();
  rmSync(dir, { recursive: true, force: true });
}
