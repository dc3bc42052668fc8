// The batch workflow's interface: what the Temporal orchestrator adapter (client side) and the workflow driver
// (src/app/temporal/workflows.ts) agree on: type name, input, signal and query. It sits with the ports so that the
// workflow imports nothing from an outer layer; no Node built-ins, so workflow code may import it.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Counts } from '../domain/progress.ts';

/** The workflow type the worker registers (the name of the exported workflow function). */
export const processBatchWorkflowType = 'processBatch';

/** The workflow that sends a final batch's webhook again (POST /v1/batch/{id}/webhook/redeliver). */
export const redeliverWebhookWorkflowType = 'redeliverWebhook';

/** Its workflow id: one per batch, apart from the batch's own run (which has ended by then). */
export function redeliveryWorkflowId(batchWorkflowId: string): string {
  return `webhook-${batchWorkflowId}`;
}

/** Constant size whatever the batch: the key is 32 hex characters, the segment index a number. */
export interface ProcessBatchInput {
  batchKey: string;
  /** Where this run starts; set by continue-as-new, absent on the first run. */
  nextSegment?: number;
}

export interface BatchProgress {
  phase: 'planning' | 'processing' | 'draining' | 'finalizing' | 'notifying' | 'done'; // literal: workflow phases, not batch statuses
  /** The stored counters as last reported by an activity of this run; null before the plan. */
  counts: Counts | null;
  segments: number;
  /** The first segment this run has not scheduled yet. */
  nextSegment: number;
  runningSegments: number;
  cancelRequested: boolean;
  failure: string | null;
}

/** Sent by the API's cancel use case after it set the batch `cancelling`. */
export const cancelSignal = defineSignal('cancel');
/** Live progress from workflow state: answered without touching storage. */
export const progressQuery = defineQuery<BatchProgress>('progress');

