// Server-Sent Events parsing for the CLI and tests, on the eventsource-parser package.
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export function createEventSourceParser(onEvent: (event: EventSourceMessage) => void) {
  return createParser({ onEvent });
}
export type { EventSourceMessage };
