// Spans around the steps of a batch, through the OpenTelemetry API only. Without a registered SDK (tracing off, the
// default) the API hands out non-recording spans: a few allocations per call, no export, no I/O.
import { context, propagation, type Attributes, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';

const tracer = trace.getTracer('batchmem');

/** Runs `work` inside a child span of the active one; a throw marks the span as an error and is rethrown. */
export function withSpan<T>(name: string, attributes: Attributes, work: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work();
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}

/**
 * Runs an HTTP request's handling inside a server span, continuing the caller's trace when the request carries a
 * W3C `traceparent`. `describe` runs after the handler, to name the span by route pattern and status.
 */
export function withServerSpan(
  method: string,
  headers: Headers,
  handle: () => Promise<void>,
  describe: () => { route: string; status: number },
): Promise<void> {
  const parent = propagation.extract(context.active(), headers, {
    get: (carrier, key) => carrier.get(key) ?? undefined,
    keys: (carrier) => [...(carrier as unknown as Map<string, string>).keys()],
  });
  return tracer.startActiveSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent, async (span) => {
    try {
      await handle();
    } finally {
      const { route, status } = describe();
      span.updateName(`${method} ${route}`);
      span.setAttributes({ 'http.route': route, 'http.response.status_code': status });
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  });
}

/** `trace_id` and `span_id` of the active span for a log line; empty when none is recording. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span || !span.isRecording()) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
