// Turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Otherwise nothing
// is loaded: the SDK and exporter are imported only here, only then.

/** What a traced process hands to the Temporal adapters: the span pipeline, typed loosely to keep the SDK out. */
export interface Telemetry {
  /** The SDK's span processor; workflow spans made inside Temporal's sandbox are exported through it. */
  spanProcessor: unknown;
  /** The SDK's resource (service name, host, pid). */
  resource: unknown;
  /** Flushes spans still buffered, then stops the SDK. */
  shutdown(): Promise<void>;
}

export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && env.OTEL_SDK_DISABLED !== 'true';
}

/**
 * Starts the OpenTelemetry SDK for this process when tracing is enabled; `serviceName` is used unless
 * OTEL_SERVICE_NAME is set. The exporter reads the standard OTEL_EXPORTER_OTLP_* variables (OTLP over HTTP).
 */
export async function startTelemetry(serviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<Telemetry | undefined> {
  if (!tracingEnabled(env)) return undefined;
  const { startOtelSdk } = await import('./otel-sdk.ts');
  return startOtelSdk(env.OTEL_SERVICE_NAME || serviceName);
}
