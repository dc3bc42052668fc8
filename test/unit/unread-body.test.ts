// When an answer given before the request body was all received must end the connection (unread-body.ts).
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { answerEndsConnection, unreadBodyLimits } from '../../src/app/http/unread-body.ts';

const request = (complete: boolean, headers: Record<string, string>) => ({ complete, headers }) as unknown as IncomingMessage;
const bound = unreadBodyLimits.keepAliveDiscardBytes;

describe('answerEndsConnection', () => {
  it('keeps the connection when the body is all received, whatever its size', () => {
    expect(answerEndsConnection(request(true, { 'content-length': String(10 * bound) }))).toBe(false);
    expect(answerEndsConnection(request(true, { 'transfer-encoding': 'chunked' }))).toBe(false);
  });

  it('keeps it when the unread body declared at most the discard bound', () => {
    expect(answerEndsConnection(request(false, { 'content-length': String(bound) }))).toBe(false);
    expect(answerEndsConnection(request(false, { 'content-length': '10' }))).toBe(false);
  });

  it('ends it when the unread body declared more, or no length (chunked), or waits for 100 Continue', () => {
    expect(answerEndsConnection(request(false, { 'content-length': String(bound + 1) }))).toBe(true);
    expect(answerEndsConnection(request(false, { 'transfer-encoding': 'chunked' }))).toBe(true);
    expect(answerEndsConnection(request(false, { 'content-length': '10', expect: '100-Continue' }))).toBe(true);
  });
});
