// Read-decide-write on a batch record, repeated when another writer got there first (compare-and-set on version).
import type { Batch } from '../domain/batch.ts';
import type { BatchPatch, BatchRepository } from '../ports/batch-repository.ts';

const maxRounds = 50;

/**
 * `decide` sees the current record and returns the patch to apply, or undefined to leave it as it is.
 * Returns the record as it stands afterwards, or undefined when the batch does not exist.
 */
export async function changeBatch(
  batches: BatchRepository,
  key: string,
  decide: (batch: Batch) => BatchPatch | undefined,
): Promise<Batch | undefined> {
  for (let round = 0; round < maxRounds; round += 1) {
    const batch = await batches.get(key);
    if (!batch) return undefined;
    const patch = decide(batch);
    if (!patch) return batch;
    const updated = await batches.update(key, batch.version, patch);
    if (updated === 'conflict') continue;
    // `decide` saw this very status (same version), so a refusal means it computed a patch the lifecycle forbids.
    if ('kind' in updated) throw new Error(`batch ${key}: ${updated.from} -> ${updated.to} is not a legal transition`);
    return updated;
  }
  throw new Error(`batch ${key} stayed contended for ${maxRounds} rounds`);
}
