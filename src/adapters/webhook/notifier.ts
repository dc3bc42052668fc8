// WebhookNotifier over HTTP, signed per Standard Webhooks with the `standardwebhooks` package, and also the way Papr
// receivers check a delivery (`X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-Webhook-Event`).
//
// The receiver's name is resolved once per connection, by the connection itself: an undici Agent whose `connect`
// resolves the host, refuses the connection when any answer is a private address, and opens the socket to the very
// address it checked. A separate check before the request (which resolved the name a second time to connect) let a
// name answer a public address to the check and a loopback one to the connection (DNS rebinding).
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { Agent, buildConnector } from 'undici';
import { privateAddressReason } from '../../domain/webhook-address.ts';
import type { DeliveryAttempt, WebhookMessage, WebhookNotifier } from '../../ports/webhook-notifier.ts';

/** The addresses a host name stands for, in the order to try them (what `dns.lookup(name, { all: true })` gives). */
export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export interface HttpNotifierOptions {
  timeoutMs: number;
  allowPrivate: boolean;
  /** The DNS step; the system resolver (getaddrinfo, so /etc/hosts too) by default. */
  resolve?: Resolver | undefined;
  /**
   * Opens the socket to an address this notifier has resolved and checked (`options.hostname` is that address;
   * `options.host` still names the receiver, for TLS). undici's own connector by default; a test that must not
   * leave loopback stands in for the public network here.
   */
  dial?: buildConnector.connector | undefined;
}

/** Thrown by the connection step when the receiver's name resolves to an address webhooks may not reach. */
export class RefusedAddressError extends Error {
  override name = 'RefusedAddressError';
}

/** Thrown by the connection step when the receiver's name does not resolve. */
export class LookupError extends Error {
  override name = 'LookupError';
}

const systemResolver: Resolver = (hostname) => lookup(hostname, { all: true });

export class HttpWebhookNotifier implements WebhookNotifier {
  readonly #options: HttpNotifierOptions;
  /** Made on the first delivery: undici is loaded only by a process that delivers (about 20 MiB of heap). */
  #client: Promise<{ agent: Agent; request: typeof import('undici').request }> | undefined;

  constructor(options: HttpNotifierOptions) {
    this.#options = options;
  }

  #connect(): Promise<{ agent: Agent; request: typeof import('undici').request }> {
    const options = this.#options;
    this.#client ??= import('undici').then(({ Agent, buildConnector, request }) => {
      const resolve = options.resolve ?? systemResolver;
      const dial = options.dial ?? buildConnector({ timeout: options.timeoutMs });
      const agent = new Agent({
        connect: (connectOptions, callback) => {
          checkedAddresses(connectOptions.hostname, resolve, options.allowPrivate).then(
            (addresses) => dialInTurn(dial, connectOptions, addresses, callback),
            (error: Error) => callback(error, null),
          );
        },
        // Idle connections stay pinned to the address checked when they opened; they are not kept for long.
        keepAliveTimeout: 4_000,
      });
      return { agent, request };
    });
    return this.#client;
  }

  async send(message: WebhookMessage): Promise<DeliveryAttempt> {
    const body = JSON.stringify(message.payload);
    const sentAt = new Date();
    const signature = standardSigner(message.secret).sign(message.messageId, sentAt, body);
    const { agent, request } = await this.#connect();
    try {
      const response = await request(message.url, {
        method: 'POST',
        body,
        dispatcher: agent,
        // `request` follows no redirects: a 3xx is an answer, not a second address to reach.
        signal: AbortSignal.timeout(this.#options.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'batchmem-webhooks/1',
          'webhook-id': message.messageId,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': signature,
          'x-webhook-signature': paprSignature(message.secret, body),
          'x-webhook-event': message.payload.type,
        },
      });
      await response.body.dump();
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { delivered: true, status };
      const error = `receiver answered ${status}`;
      // 410 Gone is the receiver saying "stop"; anything else may be passing.
      if (status === 410) return { delivered: false, error, retryable: false };
      const retryAfterMs = status === 429 || status === 503 ? retryAfter(response.headers['retry-after'], Date.now()) : undefined;
      return retryAfterMs === undefined ? { delivered: false, error, retryable: true } : { delivered: false, error, retryable: true, retryAfterMs };
    } catch (error) {
      if (error instanceof RefusedAddressError) return { delivered: false, error: `refused: ${error.message}`, retryable: false };
      if (error instanceof LookupError) return { delivered: false, error: error.message, retryable: true };
      const reason = (error as Error).name === 'TimeoutError' ? `timed out after ${this.#options.timeoutMs} ms` : (error as Error).message;
      return { delivered: false, error: reason, retryable: true };
    }
  }

  async close(): Promise<void> {
    if (this.#client) await (await this.#client).agent.close();
  }
}

/**
 * The addresses a connection to `hostname` may go to, in the resolver's order, when none of them is private (a name
 * that also answers a private address is refused as a whole). An address literal is checked as it is.
 */
async function checkedAddresses(hostname: string, resolve: Resolver, allowPrivate: boolean): Promise<string[]> {
  const host = hostname.replace(/^\[|\]$/g, '');
  let addresses: Array<{ address: string }>;
  if (isIP(host)) {
    addresses = [{ address: host }];
  } else {
    try {
      addresses = await resolve(host);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new LookupError(`could not resolve ${host}: ${code}`);
    }
    if (addresses.length === 0) throw new LookupError(`could not resolve ${host}: no addresses`);
  }
  if (!allowPrivate) {
    for (const { address } of addresses) {
      const reason = privateAddressReason(address);
      if (reason) throw new RefusedAddressError(isIP(host) ? reason : `${host} resolves to ${reason}`);
    }
  }
  return addresses.map(({ address }) => address);
}

/**
 * Opens the connection to the first of the checked `addresses` that accepts it (`localhost` may answer ::1 first
 * while the receiver listens on 127.0.0.1 only), never to any other address.
 */
function dialInTurn(dial: buildConnector.connector, options: buildConnector.Options, addresses: string[], callback: buildConnector.Callback): void {
  const [address, ...rest] = addresses;
  dial({ ...options, hostname: address! }, (...result) => {
    if (result[0] && rest.length > 0) dialInTurn(dial, options, rest, callback);
    else callback(...result);
  });
}

/**
 * A `Retry-After` value (RFC 9110 §10.2.3: whole seconds, or an HTTP date) as milliseconds from `nowMs`; undefined
 * when absent or unreadable. A date in the past is 0.
 */
export function retryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) || !/[a-z]/i.test(value) ? undefined : Math.max(0, at - nowMs);
}

/**
 * A `whsec_` secret is base64 of the key (Standard Webhooks); any other secret is the key itself, as its bytes, so
 * a receiver holding the plain string verifies with `new Webhook(secret, { format: 'raw' })`.
 */
function standardSigner(secret: string): Webhook {
  return secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });
}

/**
 * Papr's signature header: HMAC-SHA256 of the exact body bytes, keyed with the secret string as the receiver holds
 * it (its UTF-8 bytes, `whsec_` prefix included), hex-encoded after `sha256=`.
 */
export function paprSignature(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}
