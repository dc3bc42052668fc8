// WebhookNotifier over HTTP, signed per Standard Webhooks with the `standardwebhooks` package.
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
    const signature = new Webhook(message.secret).sign(message.messageId, sentAt, body);
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
