// The in-memory fakes used by use-case tests keep the same contracts as the real adapters.
import { batchRepositoryContract } from '../contract/batch-repository.contract.ts';
import { memorySinkContract } from '../contract/memory-sink.contract.ts';
import { payloadStoreContract } from '../contract/payload-store.contract.ts';
import { MemoryBatchRepository, MemoryPayloadStore, MemorySinkFake } from '../support/fakes.ts';

batchRepositoryContract('in-memory fake', async () => ({ repository: new MemoryBatchRepository(), close: async () => {} }));
payloadStoreContract('in-memory fake', async () => {
  const store = new MemoryPayloadStore();
  return {
    store,
    async corrupt(key) {
      store.objects.get(key)![0]! ^= 0xff;
    },
    close: async () => {},
  };
});
memorySinkContract('in-memory fake', async () => ({ sink: new MemorySinkFake(), close: async () => {} }));
