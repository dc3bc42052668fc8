// What the Temporal orchestrator (client side) and the batch workflow (src/app/temporal/workflows.ts) agree on:
// the workflow's type name, its input, its signal and its query. Importable from workflow code: no Node built-ins.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Counts } from '../../domain/progress.ts';

/** The workflow type the worker registers (the name of the exported workflow function). */
export const processBatchWorkflowType = 'processBatch';

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

