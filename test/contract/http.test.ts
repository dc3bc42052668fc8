// The MemorySink contract against the HTTP pipeline sink, forwarding to a loopback memory service in each format,
// and to a second batchmem process's Papr single add (`POST /v1/memory`).
import { randomBytes } from 'node:crypto';
import { memorySinkContract } from './memory-sink.contract.ts';
import { commonEnv, testKeys } from '../e2e/http.suite.ts';
import { testHttpSink } from '../support/http-sink.ts';
import { tempDir } from '../support/local-context.ts';
import { serverProcess } from '../support/server-process.ts';
import { sinkReceiver } from '../support/sink-receiver.ts';

memorySinkContract('http, signed NDJSON to a loopback receiver', async () => {
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const receiver = await sinkReceiver({ secret });
  const { sink, close } = testHttpSink({ url: `${receiver.url}/ingest`, format: 'ndjson', secret });
  return { sink, close: async () => { await close(); await receiver.close(); } };
});

memorySinkContract('http, Papr single add to a loopback receiver', async () => {
  const apiKey = randomBytes(16).toString('hex');
  const receiver = await sinkReceiver({ apiKey });
  const { sink, close } = testHttpSink({ url: receiver.url, format: 'papr', apiKey });
  return { sink, close: async () => { await close(); await receiver.close(); } };
});

memorySinkContract('http, Papr batch add to a loopback receiver', async () => {
  const apiKey = randomBytes(16).toString('hex');
  const receiver = await sinkReceiver({ apiKey, batchRoute: true });
  const { sink, close } = testHttpSink({ url: receiver.url, format: 'papr', apiKey, chunkSize: 50 });
  return { sink, close: async () => { await close(); await receiver.close(); } };
});

memorySinkContract('http, Papr single add to a second batchmem process', async () => {
  const keys = testKeys();
  const dir = tempDir();
  const target = await serverProcess({ ...commonEnv(keys), BATCHMEM_FAULT_ITEM_MARKER: '', BATCHMEM_DATA_DIR: dir.path });
  await target.start();
  const { sink, close } = testHttpSink({ url: target.url, format: 'papr', apiKey: keys[0]!.key });
  return {
    sink,
    close: async () => {
      await close();
      await target.stop();
      dir.remove();
    },
  };
});
