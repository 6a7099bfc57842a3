// Main-thread handle on a model worker thread: starts it, sends steps, returns their results.
// One lifecycle: `ModelRunner.start` (async factory), `step`, idempotent `dispose`, and an error
// on use after dispose.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { EngineError } from '../errors';
import { ModelFolder } from '../model_folder';
import { ModelInfo } from '../qwen2_vl/model_info';
import { FromWorker, SerializedError, StepRequest, StepResult, ToWorker, WorkerInit } from './protocol';
import { StepFailedError, StepRunner } from './step_runner';

function toError(error: SerializedError): EngineError {
  return new EngineError(error.kind, error.code, error.message);
}

/** Start the worker script: compiled JavaScript, or TypeScript through tsx when run from source. */
function spawn(init: WorkerInit): Worker {
  const js = join(__dirname, 'worker.js');
  if (existsSync(js)) return new Worker(js, { workerData: init });
  const ts = join(__dirname, 'worker.ts');
  return new Worker(`require('tsx/cjs'); require(${JSON.stringify(ts)});`, { eval: true, workerData: init });
}

export class ModelRunner implements StepRunner {
  readonly info: ModelInfo;
  readonly folder: ModelFolder;
  private worker: Worker | null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  private exitError: EngineError | null = null;

  private constructor(folder: ModelFolder, worker: Worker, info: ModelInfo) {
    this.folder = folder;
    this.worker = worker;
    this.info = info;
    worker.on('message', (message: FromWorker) => {
      if (!('id' in message)) return;
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      waiter?.resolve(message);
    });
    const fail = (error: EngineError) => {
      this.exitError = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    worker.on('error', (error) => fail(new EngineError('model_error', 'worker_crashed', `model worker of ${folder.name} crashed: ${error.message}`)));
    worker.on('exit', (code) => {
      if (this.worker) fail(new EngineError('model_error', 'worker_exited', `model worker of ${folder.name} exited with code ${code}`));
    });
  }

  static async start(folder: ModelFolder, options: { threads?: number; executionProviders?: string[]; promptCacheBytes?: number } = {}): Promise<ModelRunner> {
    const worker = spawn({ folder, threads: options.threads, executionProviders: options.executionProviders, promptCacheBytes: options.promptCacheBytes });
    const info = await new Promise<ModelInfo>((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if (message.type === 'ready') resolve(message.info);
        else if (message.type === 'init_error') reject(toError(message.error));
        else return;
        worker.off('message', onMessage);
        worker.off('error', onError);
      };
      const onError = (error: Error) => reject(new EngineError('model_error', 'worker_crashed', `model worker of ${folder.name} failed to start: ${error.message}`));
      worker.on('message', onMessage);
      worker.once('error', onError);
    }).catch(async (error) => {
      await worker.terminate();
      throw error;
    });
    return new ModelRunner(folder, worker, info);
  }

  get disposed(): boolean {
    return this.worker === null;
  }

  private call(message: ToWorker): Promise<FromWorker> {
    if (!this.worker) throw new EngineError('model_error', 'runner_disposed', `model ${this.folder.name} was unloaded`);
    if (this.exitError) throw this.exitError;
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      this.pending.set(message.id, { resolve, reject });
      const transfer: ArrayBuffer[] = [];
      if (message.type === 'step') {
        for (const a of message.request.admit) for (const image of a.images) if (image.pixels) transfer.push(image.pixels.buffer as ArrayBuffer);
      }
      worker.postMessage(message, transfer);
    });
  }

  /** Run one scheduler step. Image pixel buffers in the request are transferred (unusable after). */
  async step(request: StepRequest): Promise<StepResult> {
    const reply = await this.call({ type: 'step', id: this.nextId++, request });
    if (reply.type === 'stepped') return reply.result;
    if (reply.type === 'step_error') throw new StepFailedError(reply.error, reply.dropped);
    throw new EngineError('model_error', 'protocol', `unexpected reply ${reply.type}`);
  }

  async dispose(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    // The worker gets 5 s to release its sessions; the timer must not outlive a quicker answer
    // (a pending 5 s timer kept the process, and jest, alive after everything was closed).
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!this.exitError) await Promise.race([this.call({ type: 'dispose', id: this.nextId++ }), new Promise((r) => (timer = setTimeout(r, 5000)))]);
    } catch {
      // The worker is gone already; terminating below is all that is left.
    } finally {
      clearTimeout(timer);
      this.worker = null;
      await worker.terminate();
    }
  }
}
