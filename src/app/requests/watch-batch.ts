// Watch: yields the batch each time its status or counts change, ending after a final status.
import { type Batch, isFinal } from '../../domain/batch.ts';
import type { Services } from '../services.ts';

export async function* watchBatch(services: Services, key: string, signal: AbortSignal): AsyncGenerator<Batch> {
  let seen = '';
  while (!signal.aborted) {
    const batch = await services.batches.get(key);
    if (!batch) return;
    const fingerprint = `${batch.status}:${batch.counts.processed}:${batch.counts.failed}:${batch.webhook.delivered}`;
    if (fingerprint !== seen) {
      seen = fingerprint;
      yield batch;
    }
    if (isFinal(batch.status)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, services.settings.watchIntervalMs);
      signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }
}
