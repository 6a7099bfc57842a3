// What the scheduler needs of a model runner: run one step of the batch, and the hidden size (the
// bytes of an image's cached vision features). `ModelRunner` is the real one, over a worker thread;
// test/engine/scheduler.test.ts drives the scheduler with a fake.
import { EngineError } from '../errors';
import { SerializedError, StepRequest, StepResult } from './protocol';

export interface StepRunner {
  readonly info: { readonly hiddenSize: number };
  /** Run one scheduler step. Image pixel buffers in the request may be transferred (unusable after). */
  step(request: StepRequest): Promise<StepResult>;
}

/** A step failed and the runner dropped the sequences in `dropped` (the others are still running). */
export class StepFailedError extends EngineError {
  readonly dropped: number[];
  constructor(error: SerializedError, dropped: number[]) {
    super(error.kind, error.code, error.message);
    this.dropped = dropped;
  }
}
