export interface WebhookMessage {
  url: string;
  secret: string;
  /** Stable per logical event, so every retry carries the same `webhook-id`. */
  messageId: string;
  /** `type` is also sent as the `X-Webhook-Event` header; other top-level fields go as they are. */
  payload: { type: string; timestamp: string; data: unknown; [field: string]: unknown };
}

/**
 * One attempt's result. `retryAfterMs`: how long the receiver asked to be left alone (`Retry-After` on a 429 or
 * 503), which the retry policy honours up to its cap.
 */
export type DeliveryAttempt =
  | { delivered: true; status: number }
  | { delivered: false; error: string; retryable: boolean; retryAfterMs?: number };

/**
 * Sends one signed delivery attempt (Standard Webhooks). Retrying is the caller's policy, not the notifier's.
 * It never throws for a receiver's failure: that is an attempt with `delivered: false`.
 */
export interface WebhookNotifier {
  send(message: WebhookMessage): Promise<DeliveryAttempt>;
}
