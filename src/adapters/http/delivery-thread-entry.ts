// The delivery thread's code (see delivery-thread.ts): one request loop, fed requests by the thread that builds them,
// reporting its observations and answers back in the order they happen.
import { parentPort, workerData } from 'node:worker_threads';
import type { DeliveryThreadData, FromDelivery, ToDelivery } from './delivery-thread.ts';
import { type HttpSinkObserver, RequestLoop, SinkUnavailableError } from './request-loop.ts';

const port = parentPort!;
const post = (message: FromDelivery) => port.postMessage(message);

const observer: HttpSinkObserver = {
  requestFinished: (...args) => post({ type: 'observe', method: 'requestFinished', args }),
  retried: (...args) => post({ type: 'observe', method: 'retried', args }),
  paused: (...args) => post({ type: 'observe', method: 'paused', args }),
};

const loop = new RequestLoop((workerData as DeliveryThreadData).settings, observer);

port.on('message', (message: ToDelivery) => {
  if (message.type === 'paused') {
    void loop.pausedForMs().then((ms) => post({ type: 'paused', id: message.id, ms }));
    return;
  }
  loop.send(message.memories, message.wire, message.signed).then(
    (answer) => post({ type: 'answer', id: message.id, answer }),
    (error: Error) => post({ type: 'error', id: message.id, message: error.message, unavailable: error instanceof SinkUnavailableError }),
  );
});
