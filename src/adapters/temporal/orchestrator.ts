// The Orchestrator port on Temporal, the client side: connect, start `processBatch` by reference, signal cancel.
import { createHash } from 'node:crypto';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { workflowIdFor } from '../../domain/batch.ts';
import type { Orchestrator, RunOptions } from '../../ports/orchestrator.ts';
import { cancelSignal, type ProcessBatchInput, processBatchWorkflowType, redeliverWebhookWorkflowType, redeliveryWorkflowId } from '../../ports/batch-workflow.ts';

export interface TemporalTarget {
  /** gRPC frontend, `host:port`. */
  address: string;
  namespace: string;
  taskQueue: string;
  /**
   * Starts and signals carry the caller's trace context in their headers (OpenTelemetry), so the workflow's spans
   * join the trace of the request that started it. The interceptors are loaded only when this is set.
   */
  tracing?: boolean | undefined;
}

export async function connectClient(target: Pick<TemporalTarget, 'address' | 'namespace' | 'tracing'>): Promise<Client> {
  const connection = await Connection.connect({ address: target.address });
  if (!target.tracing) return new Client({ connection, namespace: target.namespace });
  const { OpenTelemetryWorkflowClientInterceptor } = await import('@temporalio/interceptors-opentelemetry');
  return new Client({ connection, namespace: target.namespace, interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } });
}

/**
 * Starts `processBatch` with only the batch key as input. The workflow id is derived from the key, and
 * - a start while a run of the batch is open joins it (conflict policy USE_EXISTING);
 * - a start after the batch's workflow completed is refused by the server and answered with the same id
 *   (reuse policy ALLOW_DUPLICATE_FAILED_ONLY), while a run that failed, timed out or was terminated may be
 *   started again: the use cases pick the batch up where its ledger stands.
 *
 * With the batch's organization, the start carries it as the task-queue fairness key (`fairnessKeyFor`), so a server
 * with fairness enabled dispatches workflow tasks of different organizations in turn; the runs continued as new keep
 * the key (the server carries a run's priority over), and the segment activities carry the same key (the workflow's
 * `beginBatch` plan derives it with the same function).
 */
export class TemporalOrchestrator implements Orchestrator {
  readonly #client: Client;
  readonly #taskQueue: string;
  readonly #ownsConnection: boolean;

  constructor(client: Client, options: { taskQueue: string; ownsConnection?: boolean }) {
    this.#client = client;
    this.#taskQueue = options.taskQueue;
    this.#ownsConnection = options.ownsConnection ?? false;
  }

  static async connect(target: TemporalTarget): Promise<TemporalOrchestrator> {
    return new TemporalOrchestrator(await connectClient(target), { taskQueue: target.taskQueue, ownsConnection: true });
  }

  async start(batchKey: string, options: RunOptions & { redrive?: number } = {}): Promise<{ workflowId: string }> {
    const workflowId = workflowIdFor(batchKey, options.redrive);
    try {
      const input: ProcessBatchInput = { batchKey };
      await this.#client.workflow.start(processBatchWorkflowType, {
        taskQueue: this.#taskQueue,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
        ...fairness(options),
      });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }
    return { workflowId };
  }

  /**
   * Starts `redeliverWebhook` (the batch's own run has ended, and its id cannot be started again): a redelivery
   * still running is joined (USE_EXISTING), an ended one is started afresh (ALLOW_DUPLICATE).
   */
  async redeliver(batchKey: string, options: RunOptions = {}): Promise<void> {
    const input: ProcessBatchInput = { batchKey };
    try {
      await this.#client.workflow.start(redeliverWebhookWorkflowType, {
        taskQueue: this.#taskQueue,
        workflowId: redeliveryWorkflowId(workflowIdFor(batchKey)),
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        ...fairness(options),
      });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }
  }

  async cancel(batchKey: string, options: { redrive?: number } = {}): Promise<void> {
    try {
      await this.#client.workflow.getHandle(workflowIdFor(batchKey, options.redrive)).signal(cancelSignal);
    } catch (error) {
      // Not running (never started, or closed): nothing to stop.
      if (!(error instanceof WorkflowNotFoundError)) throw error;
    }
  }

  async check(): Promise<void> {
    await this.#client.workflowService.getSystemInfo({});
  }

  async close(): Promise<void> {
    if (this.#ownsConnection) await this.#client.connection.close();
  }
}

/**
 * The task-queue fairness key of an organization's workflows and activities: the organization itself, or its SHA-256
 * (64 hex characters) when it is longer than Temporal's limit of 64 bytes for a key. The one derivation for the
 * workflow start (here) and the segment activities (the `beginBatch` plan, src/app/temporal/activities.ts).
 */
export function fairnessKeyFor(organization: string): string {
  return Buffer.byteLength(organization) <= 64 ? organization : createHash('sha256').update(organization).digest('hex');
}

/** The start's priority: the fairness key when the organization is known, nothing otherwise (FIFO among those). */
function fairness(options: RunOptions): { priority?: { fairnessKey: string } } {
  return options.organization ? { priority: { fairnessKey: fairnessKeyFor(options.organization) } } : {};
}
