// The MemorySink contract against the HTTP pipeline sink, forwarding to a loopback memory service in each format.
import { randomBytes } from 'node:crypto';
import { memorySinkContract } from './memory-sink.contract.ts';
import { testHttpSink } from '../support/http-sink.ts';
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
