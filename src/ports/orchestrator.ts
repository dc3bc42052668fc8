/**
 * Runs batches by reference: only the batch key crosses this boundary, never memories.
 *
 * Guarantees an adapter must give:
 * - `start` is idempotent: starting a batch that is already running or done returns its existing workflow id.
 * - `cancel` asks a running batch to stop scheduling segments; the batch ends `cancelled` with partial counts.
 *   Cancelling a batch that is not running is a no-op.
 * - `redeliver` runs the webhook retry loop of a final batch again (its delivery state was reset by the caller), with
 *   the same event and `webhook-id`; a loop already running for the batch may be joined instead of doubled.
 * - `organization`, when given, is the batch's owner: an orchestrator that shares its capacity between organizations
 *   schedules the run by it (Temporal: the task-queue fairness key of the workflow). It is scheduling metadata only,
 *   never part of the run's input; an orchestrator that schedules otherwise ignores it.
 */
export interface Orchestrator {
  /**
   * `redrive` (from 1) starts the run of a reopened batch under a workflow id of its own (`workflowIdFor`), since
   * the first run's id is taken by a closed run; the input is still only the key.
   */
  start(batchKey: string, options?: RunOptions & { redrive?: number }): Promise<{ workflowId: string }>;
  /** `redrive` names the run to stop when the batch was reopened (its run has an id of its own). */
  cancel(batchKey: string, options?: { redrive?: number }): Promise<void>;
  redeliver(batchKey: string, options?: RunOptions): Promise<void>;
  check(): Promise<void>;
  close(): Promise<void>;
}

/** How a run is scheduled, apart from what it does (its input is the batch key alone). */
export interface RunOptions {
  /** The organization the batch belongs to (`Tenant.organization`): the unit of fair share. */
  organization?: string;
}
