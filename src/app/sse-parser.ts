// Reads a Server-Sent Events stream to its end, on the eventsource-parser package (for the CLI and tests).
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** `onRetry` receives the server's `retry:` hint (milliseconds), for a client that reconnects. */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: EventSourceMessage) => void,
  onRetry?: (retryMs: number) => void,
): Promise<void> {
  const parser = createParser({ onEvent, ...(onRetry ? { onRetry } : {}) });
  const decoder = new TextDecoder();
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    parser.feed(decoder.decode(value, { stream: true }));
  }
}

export type { EventSourceMessage };
