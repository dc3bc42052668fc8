// The upload thread's own code (started by upload-thread.ts): each job reads one submit body, whose chunks the main
// thread passes in as the thread asks for them, through the same reading and checks as on the HTTP thread
// (submit-body.ts, `checkedSegments`, `validateBatch`), and sends back checked, encoded segments or a dry-run report.
import { parentPort, workerData } from 'node:worker_threads';
import { AppFailure } from './errors.ts';
import { submitBodyInput } from './http/submit-body.ts';
import { checkedSegments, type PreparedSegment, validateBatch } from './requests/submit-batch.ts';
import { type FromUploadThread, segmentsAhead, type ToUploadThread, type UploadThreadData } from './upload-thread.ts';

const { settings } = workerData as UploadThreadData;
const port = parentPort!;
const post = (message: FromUploadThread, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

/** Body chunks the stream keeps ready ahead of the parser, so it rarely waits for a round trip to the main thread. */
const chunksAhead = 4;

/** One body being read: its stream, fed by the main thread, and the credit for segments to send. */
class Reading {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Resolves the stream's pending pull once the main thread answered it. */
  #pulled: (() => void) | undefined;
  #credit = segmentsAhead;
  #creditWaiter: (() => void) | undefined;
  stopped = false;
  readonly job: number;

  constructor(job: number) {
    this.job = job;
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        pull: () =>
          new Promise<void>((resolve) => {
            this.#pulled = resolve;
            post({ type: 'pull', job });
          }),
      },
      new CountQueuingStrategy({ highWaterMark: chunksAhead }),
    );
  }

  fed(message: Extract<ToUploadThread, { type: 'chunk' | 'end' | 'abort' }>): void {
    if (this.stopped) return;
    try {
      if (message.type === 'chunk') this.#controller.enqueue(message.bytes);
      else if (message.type === 'end') this.#controller.close();
      // Read as on the HTTP thread: the body's own refusal as it was raised, else (the client went away) a failed
      // read, which the reading answers as "the upload ended before the body was complete".
      else this.#controller.error(message.error ? new AppFailure(message.error) : new Error('the request body failed'));
    } catch {
      // The reader gave up on the body already (it refused it part-way): the rest is not wanted.
    }
    this.#answered();
  }

  taken(): void {
    this.#credit += 1;
    this.#creditWaiter?.();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    try {
      this.#controller.error(new Error('the upload was stopped'));
    } catch {
      // closed already
    }
    this.#answered();
    this.#creditWaiter?.();
  }

  /** Waits until the main thread has room for another segment; false once the job was stopped. */
  async room(): Promise<boolean> {
    while (this.#credit === 0 && !this.stopped) await new Promise<void>((resolve) => (this.#creditWaiter = resolve));
    this.#creditWaiter = undefined;
    if (this.stopped) return false;
    this.#credit -= 1;
    return true;
  }

  #answered(): void {
    const pulled = this.#pulled;
    this.#pulled = undefined;
    pulled?.();
  }
}

const readings = new Map<number, Reading>();

/** A failure as the main thread answers it: the submit's own error, or a fault. */
function failure(job: number, error: unknown): FromUploadThread {
  if (error instanceof AppFailure) return { type: 'refused', job, error: error.error };
  const fault = error instanceof Error ? error : new Error(String(error));
  return { type: 'crashed', job, name: fault.name, message: fault.message };
}

/** Sends one segment once encoded; its bytes are moved, not copied, when the segment owns its whole buffer. */
async function send(reading: Reading, segment: PreparedSegment): Promise<void> {
  const { body, sha256Hex } = await segment.encoded;
  if (!(await reading.room())) return;
  const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
  post(
    { type: 'segment', job: reading.job, firstIndex: segment.firstIndex, itemCount: segment.itemCount, rawBytes: segment.rawBytes, body, sha256Hex },
    owned ? [body.buffer as ArrayBuffer] : [],
  );
}

async function readSegments(reading: Reading, message: Extract<ToUploadThread, { type: 'read'; kind: 'segments' }>): Promise<void> {
  const segments = checkedSegments(settings, submitBodyInput(reading.body, message.spec), message.mode);
  // One segment encodes (on libuv's pool) while the next is parsed; they are sent in body order.
  let previous: Promise<void> = Promise.resolve();
  try {
    for (;;) {
      const step = await segments.next();
      if (reading.stopped) return;
      if (step.done) {
        await previous;
        if (!reading.stopped) post({ type: 'done', job: reading.job, read: step.value });
        return;
      }
      await previous;
      if (reading.stopped) return;
      previous = send(reading, step.value);
    }
  } catch (error) {
    await previous.catch(() => undefined);
    if (!reading.stopped) post(failure(reading.job, error));
  } finally {
    await segments.return(undefined as never).catch(() => undefined);
  }
}

async function validate(reading: Reading, message: Extract<ToUploadThread, { type: 'read'; kind: 'validate' }>): Promise<void> {
  try {
    post({ type: 'report', job: reading.job, result: await validateBatch({ settings }, submitBodyInput(reading.body, message.spec)) });
  } catch (error) {
    post(failure(reading.job, error));
  }
}

port.on('message', (message: ToUploadThread) => {
  if (message.type === 'read') {
    const reading = new Reading(message.job);
    readings.set(message.job, reading);
    const done = message.kind === 'segments' ? readSegments(reading, message) : validate(reading, message);
    void done.finally(() => readings.delete(message.job));
    return;
  }
  const reading = readings.get(message.job);
  if (!reading) return;
  switch (message.type) {
    case 'chunk':
    case 'end':
    case 'abort':
      reading.fed(message);
      return;
    case 'taken':
      reading.taken();
      return;
    case 'stop':
      reading.stop();
  }
});
post({ type: 'ready' });
