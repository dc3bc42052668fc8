// WebhookNotifier over HTTP, signed per Standard Webhooks with the `standardwebhooks` package, and also the way Papr
// receivers check a delivery (`X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-Webhook-Event`).
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { Webhook } from 'standardwebhooks';
import { privateAddressReason } from '../../domain/webhook-address.ts';
import type { DeliveryAttempt, WebhookMessage, WebhookNotifier } from '../../ports/webhook-notifier.ts';

export interface HttpNotifierOptions {
  timeoutMs: number;
  allowPrivate: boolean;
}

export class HttpWebhookNotifier implements WebhookNotifier {
  readonly #options: HttpNotifierOptions;

  constructor(options: HttpNotifierOptions) {
    this.#options = options;
  }

  async send(message: WebhookMessage): Promise<DeliveryAttempt> {
    const body = JSON.stringify(message.payload);
    const url = new URL(message.url);
    if (!this.#options.allowPrivate) {
      // The URL was checked at submit time; resolve again now, so a name cannot be re-pointed at a private address.
      const reason = await resolvesPrivate(url.hostname);
      if (reason) return { delivered: false, error: `refused: ${reason}`, retryable: false };
    }
    const sentAt = new Date();
    const signature = standardSigner(message.secret).sign(message.messageId, sentAt, body);
    try {
      const response = await fetch(url, {
        method: 'POST',
        body,
        redirect: 'manual',
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
      await response.body?.cancel();
      if (response.ok) return { delivered: true, status: response.status };
      // 410 Gone is the receiver saying "stop"; anything else may be passing.
      return { delivered: false, error: `receiver answered ${response.status}`, retryable: response.status !== 410 };
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? `timed out after ${this.#options.timeoutMs} ms` : (error as Error).message;
      return { delivered: false, error: reason, retryable: true };
    }
  }
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

async function resolvesPrivate(hostname: string): Promise<string | undefined> {
  const host = hostname.replace(/^\[|\]$/g, '');
  try {
    const addresses = await lookup(host, { all: true });
    for (const { address } of addresses) {
      const reason = privateAddressReason(address);
      if (reason) return reason;
    }
    return undefined;
  } catch {
    return undefined; // An unresolvable name fails at fetch, as a retryable attempt.
  }
}
