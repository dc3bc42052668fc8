// The OpenTelemetry SDK set-up, imported by telemetry.ts only when tracing is enabled.
import { hostname } from 'node:os';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Telemetry } from './telemetry.ts';

/**
 * One batching span processor exporting OTLP over HTTP (endpoint, headers and batching from the standard
 * OTEL_EXPORTER_OTLP_* and OTEL_BSP_* variables), W3C trace context, async-hooks context; no auto-instrumentation, no OTel logs or metrics (Prometheus has those).
 */
export function startOtelSdk(serviceName: string): Telemetry {
  const resource = new Resource({ 'service.name': serviceName, 'host.name': hostname(), 'process.pid': process.pid });
  const spanProcessor = new BatchSpanProcessor(new OTLPTraceExporter());
  const sdk = new NodeSDK({ resource, autoDetectResources: false, spanProcessors: [spanProcessor], instrumentations: [], logRecordProcessors: [] });
  sdk.start();
  return { spanProcessor, resource, shutdown: () => sdk.shutdown() };
}
