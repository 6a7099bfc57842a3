// Continuous batching over one model (one worker). Requests wait in a bounded queue; at every
// step the scheduler admits waiting requests (FIFO, within the batch size and a prefill-token
// budget), drops cancelled or late ones, and lets the worker prefill the newcomers and decode
// every running sequence in one batch. A request that arrives while others decode joins at the
// next step. The scheduler knows nothing of HTTP, benchmarks or jobs.
import { EngineError } from './errors';
import { FeatureCachePolicy } from './feature_cache';
import { AdmitRequest, FinishReason, ImageInput, StepRequest, StepResult } from './runner/protocol';
import { StepFailedError, StepRunner } from './runner/step_runner';
import { SamplingParams } from './sampling/params';

export interface SchedulerOptions {
  /** Running sequences decoded together. */
  maxBatchSize: number;
  /** Requests waiting to be admitted; beyond it submissions are refused (overload). */
  maxWaiting: number;
  /** Prompt tokens prefilled in one step (at least one request is always admitted). */
  maxPrefillTokens: number;
  /** Bytes of vision features the worker keeps for repeated images. */
  featureCacheBytes: number;
  /**
   * While nobody waits to join, one worker call runs as many decode steps as fit in this many
   * milliseconds (default 20), up to `maxDecodeStepsPerCall` (default 32): a cheap model saves a
   * thread round trip per token, an expensive one still decodes one step per call, and a
   * newcomer never waits much longer than this for its prefill.
   */
  decodeCallBudgetMs?: number;
  maxDecodeStepsPerCall?: number;
}

export interface SequenceImage {
  key: string;
  grid: [number, number, number];
  tokens: number;
  /** Needed unless the features are cached; the scheduler decides at admission. */
  pixels?: Float32Array;
}

export interface SequenceInput {
  inputIds: number[];
  positionIds: number[];
  nextPosition: number;
  images: SequenceImage[];
  sampling: SamplingParams;
  maxNewTokens: number;
  ignoreEos?: boolean;
  vocabLimit: number;
  /** Epoch milliseconds after which the request fails with a timeout. */
  deadline?: number;
  signal?: AbortSignal;
}

export interface SequenceTimings {
  queueMs: number;
  prefillMs: number;
  decodeMs: number;
}

export interface SequenceCallbacks {
  /** New tokens; with `stopped` true the last one is the end token that stopped the sequence. */
  onTokens(tokens: number[], stopped: boolean): void;
  onFinish(reason: FinishReason, timings: SequenceTimings): void;
  onError(error: EngineError): void;
}

export interface SchedulerObserver {
  /**
   * A step came back. `callMs` is its round trip as the scheduler saw it: the worker's runs
   * (result.prefillMs + result.decodeMs) plus the thread hops and the time the request or the
   * reply waited for a busy main thread.
   */
  onStep?(result: StepResult, waiting: number, running: number, callMs: number): void;
}

interface Sequence {
  id: number;
  input: SequenceInput;
  callbacks: SequenceCallbacks;
  submittedAt: number;
  admittedAt?: number;
  prefillMs: number;
  decodeMs: number;
  cancelled: EngineError | null;
  onAbort?: () => void;
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly running = new Map<number, Sequence>();
  private readonly featureCache: FeatureCachePolicy;
  private pendingEvictions: string[] = [];
  private nextId = 1;
  private looping = false;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  /** Recent request durations, for Retry-After estimates. */
  private recentMs = 1000;
  /** Recent cost of one decode step (ms), for sizing worker calls. */
  private stepMs = 0;

  constructor(
    private readonly runner: StepRunner,
    private readonly options: SchedulerOptions,
    private readonly observer: SchedulerObserver = {},
  ) {
    this.featureCache = new FeatureCachePolicy(options.featureCacheBytes);
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  get runningCount(): number {
    return this.running.size;
  }

  get featureCacheStats() {
    return { hits: this.featureCache.hits, misses: this.featureCache.misses, entries: this.featureCache.size, bytes: this.featureCache.usedBytes };
  }

  /** Seconds a refused client should wait: roughly the time for the queue ahead to clear once. */
  retryAfterSeconds(): number {
    const rounds = Math.ceil((this.waiting.length + 1) / Math.max(1, this.options.maxBatchSize));
    return Math.max(1, Math.min(60, Math.ceil((rounds * this.recentMs) / 1000)));
  }

  submit(input: SequenceInput, callbacks: SequenceCallbacks): number {
    if (this.draining) {
      throw new EngineError('overloaded', 'shutting_down', 'the server is shutting down and takes no new requests', { retryAfterSeconds: 5 });
    }
    if (input.signal?.aborted) throw new EngineError('cancelled', 'cancelled', 'the request was cancelled');
    if (this.waiting.length >= this.options.maxWaiting) {
      throw new EngineError('overloaded', 'queue_full', `the request queue is full (${this.options.maxWaiting} waiting); retry later`, {
        retryAfterSeconds: this.retryAfterSeconds(),
      });
    }
    const seq: Sequence = { id: this.nextId++, input, callbacks, submittedAt: Date.now(), prefillMs: 0, decodeMs: 0, cancelled: null };
    if (input.signal) {
      seq.onAbort = () => this.cancel(seq, new EngineError('cancelled', 'cancelled', 'the client went away'));
      input.signal.addEventListener('abort', seq.onAbort, { once: true });
    }
    this.waiting.push(seq);
    this.kick();
    return seq.id;
  }

  /** Stop taking requests and resolve once every accepted request has finished. */
  drain(): Promise<void> {
    this.draining = true;
    if (!this.looping && !this.waiting.length && !this.running.size) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  get isDraining(): boolean {
    return this.draining;
  }

  private cancel(seq: Sequence, reason: EngineError) {
    const index = this.waiting.indexOf(seq);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      this.fail(seq, reason);
      return;
    }
    // Running: dropped from the worker's batch at the next step.
    if (this.running.has(seq.id)) seq.cancelled = reason;
  }

  private kick() {
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  private async loop() {
    try {
      while (this.waiting.length || this.running.size) {
        await this.stepOnce();
      }
    } finally {
      this.looping = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private async stepOnce() {
    const now = Date.now();
    const drop: number[] = [];
    for (const seq of this.running.values()) {
      if (!seq.cancelled && seq.input.deadline !== undefined && now > seq.input.deadline) {
        seq.cancelled = new EngineError('timeout', 'deadline_exceeded', 'the request did not finish before its deadline');
      }
      if (seq.cancelled) {
        drop.push(seq.id);
        this.running.delete(seq.id);
        this.fail(seq, seq.cancelled);
      }
    }
    for (const seq of [...this.waiting]) {
      if (seq.input.deadline !== undefined && now > seq.input.deadline) {
        this.waiting.splice(this.waiting.indexOf(seq), 1);
        this.fail(seq, new EngineError('timeout', 'deadline_exceeded', 'the request waited in the queue past its deadline'));
      }
    }

    const admit: AdmitRequest[] = [];
    const admitted: Sequence[] = [];
    let tokens = 0;
    while (this.waiting.length && this.running.size + admitted.length < this.options.maxBatchSize) {
      const next = this.waiting[0];
      if (admitted.length && tokens + next.input.inputIds.length > this.options.maxPrefillTokens) break;
      this.waiting.shift();
      tokens += next.input.inputIds.length;
      next.admittedAt = Date.now();
      admitted.push(next);
      admit.push(this.admitRequest(next));
    }
    if (!admit.length && !this.running.size) {
      if (drop.length) await this.runStep({ admit, drop, evict: this.takeEvictions(), decodeSteps: 1 }, []);
      return;
    }
    // No decode run when the batch starts with this step's admissions: their first tokens come back
    // straight after the prefill, not one decode run later. One when sequences join a running batch
    // (its rows keep decoding; the newcomers' first token should not wait for a call of many) or
    // others wait to join; several when the batch just decodes.
    const decodeSteps = admit.length ? (this.running.size ? 1 : 0) : this.waiting.length ? 1 : this.decodeStepsForBudget();
    for (const seq of admitted) this.running.set(seq.id, seq);
    await this.runStep({ admit, drop, evict: this.takeEvictions(), decodeSteps }, admitted);
  }

  /** Decode steps that fit the call budget, from the recent cost of one step. */
  private decodeStepsForBudget(): number {
    const budget = this.options.decodeCallBudgetMs ?? 20;
    const most = Math.max(1, this.options.maxDecodeStepsPerCall ?? 32);
    if (this.stepMs <= 0) return 1;
    return Math.max(1, Math.min(most, Math.floor(budget / this.stepMs)));
  }

  private takeEvictions(): string[] {
    const evict = this.pendingEvictions;
    this.pendingEvictions = [];
    return evict;
  }

  private admitRequest(seq: Sequence): AdmitRequest {
    const { input } = seq;
    const images: ImageInput[] = input.images.map((image) => {
      if (this.featureCache.lookup(image.key)) return { key: image.key, grid: image.grid, tokens: image.tokens, cache: true };
      if (!image.pixels) throw new EngineError('model_error', 'pixels_missing', 'an uncached image was submitted without pixels');
      const bytes = image.tokens * this.runner.info.hiddenSize * 4;
      const evicted = this.featureCache.admit(image.key, bytes);
      if (evicted) this.pendingEvictions.push(...evicted);
      return { key: image.key, grid: image.grid, tokens: image.tokens, pixels: image.pixels, cache: evicted !== null };
    });
    // Pixel buffers are transferred to the worker; the request keeps no reference to them.
    for (const image of input.images) image.pixels = undefined;
    return {
      seqId: seq.id,
      inputIds: input.inputIds,
      positionIds: input.positionIds,
      nextPosition: input.nextPosition,
      images,
      sampling: input.sampling,
      maxNewTokens: input.maxNewTokens,
      ignoreEos: input.ignoreEos ?? false,
      vocabLimit: input.vocabLimit,
    };
  }

  private async runStep(request: StepRequest, admitted: Sequence[]) {
    let result: StepResult;
    const called = performance.now();
    try {
      result = await this.runner.step(request);
    } catch (error) {
      const engineError = error instanceof EngineError ? error : new EngineError('model_error', 'inference_failed', String(error));
      const dropped = error instanceof StepFailedError ? new Set(error.dropped) : new Set(this.running.keys());
      for (const seq of [...this.running.values()]) {
        if (dropped.has(seq.id) || admitted.includes(seq)) {
          this.running.delete(seq.id);
          this.fail(seq, engineError);
        }
      }
      return;
    }
    if (result.decodeSteps) {
      const perStep = result.decodeMs / result.decodeSteps;
      this.stepMs = this.stepMs ? 0.8 * this.stepMs + 0.2 * perStep : perStep;
    }
    const prefilled = new Set(result.prefilled);
    for (const seq of this.running.values()) {
      if (prefilled.has(seq.id)) seq.prefillMs += result.prefillMs;
      if (result.batchSize) seq.decodeMs += result.decodeMs;
    }
    for (const out of result.outputs) {
      const seq = this.running.get(out.seqId);
      if (!seq) continue;
      try {
        seq.callbacks.onTokens(out.tokens, out.finish === 'stop');
      } catch {
        // A consumer's failure must not stop the batch; the sequence is dropped at the next step.
        seq.cancelled = new EngineError('cancelled', 'consumer_failed', 'the consumer of this sequence failed');
      }
      if (out.finish) {
        this.running.delete(seq.id);
        this.finish(seq, out.finish);
      }
    }
    this.observer.onStep?.(result, this.waiting.length, this.running.size, performance.now() - called);
  }

  private timings(seq: Sequence): SequenceTimings {
    return { queueMs: (seq.admittedAt ?? Date.now()) - seq.submittedAt, prefillMs: seq.prefillMs, decodeMs: seq.decodeMs };
  }

  private detach(seq: Sequence) {
    if (seq.onAbort) seq.input.signal?.removeEventListener('abort', seq.onAbort);
  }

  private finish(seq: Sequence, reason: FinishReason) {
    this.detach(seq);
    this.recentMs = 0.8 * this.recentMs + 0.2 * (Date.now() - seq.submittedAt);
    seq.callbacks.onFinish(reason, this.timings(seq));
  }

  private fail(seq: Sequence, error: EngineError) {
    this.detach(seq);
    seq.callbacks.onError(error);
  }
}
