// What happens to a request body the API answered before reading it all (a refusal at the headers, a 401, a 413, an
// early replay of an existing batch): the rest is read and thrown away, within bounds, so the connection stays usable,
// and where it cannot stay usable it is closed the way HTTP/1.1 asks (RFC 9112 §9.6), after the answer, not under it.
//
// Two ways a connection went wrong here before. The HTTP adapter (@hono/node-server) drains an unread body for 500 ms
// and then destroys the socket, although the answer said keep-alive: a client that sent its next request on that
// connection met "other side closed". And an answer that says `Connection: close` makes Node destroy the socket as soon
// as the answer is written: the client, still sending, meets a reset (EPIPE) instead of reading the answer.
//
// The rules, as Go's net/http and nginx's lingering close apply them:
// - an answer that leaves a body of at most `keepAliveDiscardBytes` unread keeps the connection; the rest is read and
//   thrown away (for at most `keepAliveDiscardMs`: a client slower than that is closed as below);
// - an answer that leaves more unread, or an unknown amount (chunked), or a body the client may not send at all
//   (`Expect: 100-continue`) says `Connection: close`;
// - closing is lingering: the write side ends after the answer (FIN), what still arrives is read and thrown away so
//   the client can finish sending and read the answer, and the socket goes after `lingerMs` or `lingerBytes`,
//   whichever comes first, or when the client closes.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface UnreadBodyLimits {
  /** Largest declared body (Content-Length, bytes) whose unread rest is discarded on a connection kept alive. */
  keepAliveDiscardBytes: number;
  /** How long (ms) that discard may take after the answer before the connection is closed anyway. */
  keepAliveDiscardMs: number;
  /** How long (ms) a closing connection keeps reading after its answer before the socket is destroyed. */
  lingerMs: number;
  /** How many bytes (body bytes after the answer) a closing connection reads before the socket is destroyed. */
  lingerBytes: number;
}

/** Go's net/http discards up to 256 KiB after a handler; nginx lingers 5 s at most (lingering_time 30 s, timeout 5 s). */
export const unreadBodyLimits: UnreadBodyLimits = {
  keepAliveDiscardBytes: 256 * 1024,
  keepAliveDiscardMs: 5_000,
  lingerMs: 3_000,
  lingerBytes: 64 * 1024 * 1024,
};

/**
 * Whether an answer to `incoming` given now must end the connection (`Connection: close`): true when the body is not
 * all received and what remains is more than `keepAliveDiscardBytes`, unknown (no Content-Length), or may never come
 * (`Expect: 100-continue`, where the client waits for 100 before sending). The declared length stands in for the
 * unread rest, of which it is an upper bound.
 */
export function answerEndsConnection(incoming: IncomingMessage, limits: UnreadBodyLimits = unreadBodyLimits): boolean {
  if (incoming.complete) return false;
  if (incoming.headers.expect?.toLowerCase() === '100-continue') return true;
  const declaredBytes = Number(incoming.headers['content-length'] ?? Number.NaN);
  return !Number.isSafeInteger(declaredBytes) || declaredBytes > limits.keepAliveDiscardBytes;
}

/**
 * Reads the rest of `incoming` into `onChunk` and nowhere else. The body's earlier readers go first, as Node's own
 * discard of an unread body does: the web stream a handler read the body through (Readable.toWeb) pauses the request
 * whenever its queue is full, and nobody reads that queue once the answer is out, so the body would stall there, the
 * connection with it.
 */
function discard(incoming: IncomingMessage, onChunk: (chunk: Buffer) => void): void {
  incoming.removeAllListeners('data');
  incoming.on('data', onChunk);
  incoming.resume();
}

/**
 * Installs the discard and the lingering close on `server` (a plain node:http server serving the API through
 * @hono/node-server). Node and the adapter both close a connection through `socket.destroySoon()` (Node after an
 * answer that said `Connection: close`; the adapter when its 500 ms drain runs out), so each socket's `destroySoon`
 * becomes the lingering close, except while a kept-alive connection's discard is within its bounds: then the adapter's
 * close is not taken and this discard decides.
 */
export function settleUnreadBodies(server: Server, limits: UnreadBodyLimits = unreadBodyLimits): void {
  const discarding = new WeakSet<Socket>();
  const lingering = new WeakSet<Socket>();

  function lingeringClose(socket: Socket, incoming: IncomingMessage | undefined): void {
    if (socket.destroyed || lingering.has(socket)) return;
    lingering.add(socket);
    discarding.delete(socket);
    socket.end();
    const timer = setTimeout(() => socket.destroy(), limits.lingerMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    if (incoming && !incoming.complete) {
      let discardedBytes = 0;
      discard(incoming, (chunk) => {
        discardedBytes += chunk.length;
        if (discardedBytes > limits.lingerBytes) socket.destroy();
      });
    }
  }

  const current = new WeakMap<Socket, IncomingMessage>();
  server.on('connection', (socket: Socket) => {
    socket.destroySoon = () => {
      if (!discarding.has(socket)) lingeringClose(socket, current.get(socket));
    };
  });

  server.on('request', (incoming: IncomingMessage, outgoing: ServerResponse) => {
    const socket = incoming.socket;
    current.set(socket, incoming);
    // Node's own handling of the finished answer (its close, if the answer said so) has run before this listener.
    outgoing.once('finish', () => {
      if (incoming.complete || socket.destroyed || socket.writableEnded) return;
      discarding.add(socket);
      let discardedBytes = 0;
      const stop = () => {
        clearTimeout(timer);
        discarding.delete(socket);
      };
      const timer = setTimeout(() => {
        stop();
        lingeringClose(socket, incoming);
      }, limits.keepAliveDiscardMs);
      timer.unref();
      incoming.once('end', stop);
      incoming.once('close', stop);
      discard(incoming, (chunk) => {
        discardedBytes += chunk.length;
        if (discardedBytes > limits.keepAliveDiscardBytes && discarding.has(socket)) {
          stop();
          lingeringClose(socket, incoming);
        }
      });
    });
  });
}
