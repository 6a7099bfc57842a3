// Prometheus metrics, one registry per app instance (docs/api.md, "Probes and metrics"). Latency buckets span what
// LLM serving produces: milliseconds per token up to minutes per request.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EngineObserver, RequestStats } from '../engine/engine';
import type { StepResult } from '../engine/runner/protocol';
import type { JobEvent } from '../training/manager';
import { JOB_STATUSES, JobStatus } from '../training/store';

/** What the training gauges read: job counts on each scrape, per-step metrics as they come. */
export interface TrainingSource {
  counts(): Record<JobStatus, number>;
  list(): { id: string; metrics: Record<string, unknown> | null }[];
  onEvent(listener: (event: JobEvent) => void): () => void;
}

const REQUEST_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];
const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40];
const TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BATCH_BUCKETS = [1, 2, 4, 8, 12, 16, 24, 32, 64, 128];

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly requestDuration: Histogram<'route'>;
  readonly timeToFirstToken: Histogram<'model'>;
  readonly timePerOutputToken: Histogram<'model'>;
  readonly promptTokens: Counter<'model'>;
  readonly generationTokens: Counter<'model'>;
  readonly running: Gauge<'model'>;
  readonly waiting: Gauge<'model'>;
  readonly batchSize: Histogram<'model'>;
  readonly imageFeatures: Counter<'model' | 'source'>;
  readonly promptPrefills: Counter<'model' | 'source'>;
  readonly kvCacheBytes: Gauge<'model'>;
  readonly stepSeconds: Histogram<'model' | 'phase'>;
  readonly evalItems: Counter<'benchmark'>;
  readonly trainJobs: Gauge<'status'>;
  readonly trainReward: Gauge<'job'>;
  readonly trainCompletionLength: Gauge<'job'>;
  readonly remoteRequests: Counter<'model' | 'remote'>;
  readonly remoteErrors: Counter<'model' | 'remote' | 'code'>;
  readonly remoteDuration: Histogram<'model' | 'remote'>;
  readonly remoteInFlight: Gauge<'model' | 'remote'>;
  private trainingCounts?: () => Record<JobStatus, number>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'vlm_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers });
    this.requestDuration = new Histogram({ name: 'vlm_request_duration_seconds', help: 'HTTP request duration', labelNames: ['route'], buckets: REQUEST_BUCKETS, registers });
    this.timeToFirstToken = new Histogram({ name: 'vlm_time_to_first_token_seconds', help: 'Time from request to first generated token', labelNames: ['model'], buckets: TTFT_BUCKETS, registers });
    this.timePerOutputToken = new Histogram({ name: 'vlm_time_per_output_token_seconds', help: 'Decode time per generated token after the first', labelNames: ['model'], buckets: TPOT_BUCKETS, registers });
    this.promptTokens = new Counter({ name: 'vlm_prompt_tokens_total', help: 'Prompt tokens processed (image tokens included)', labelNames: ['model'], registers });
    this.generationTokens = new Counter({ name: 'vlm_generation_tokens_total', help: 'Tokens generated', labelNames: ['model'], registers });
    this.running = new Gauge({ name: 'vlm_requests_running', help: 'Sequences in the running batch', labelNames: ['model'], registers });
    this.waiting = new Gauge({ name: 'vlm_requests_waiting', help: 'Requests waiting for a batch slot', labelNames: ['model'], registers });
    this.batchSize = new Histogram({ name: 'vlm_batch_size', help: 'Sequences per decode step', labelNames: ['model'], buckets: BATCH_BUCKETS, registers });
    this.imageFeatures = new Counter({ name: 'vlm_image_features_total', help: 'Images by where their vision features came from', labelNames: ['model', 'source'], registers });
    this.promptPrefills = new Counter({ name: 'vlm_prompt_prefills_total', help: 'Admitted prompts by where their KV cache came from (computed, or the prompt cache)', labelNames: ['model', 'source'], registers });
    this.kvCacheBytes = new Gauge({ name: 'vlm_kv_cache_bytes', help: 'Bytes of KV cache held by the running batch', labelNames: ['model'], registers });
    this.evalItems = new Counter({ name: 'vlm_eval_items_total', help: 'Evaluation responses generated and scored (one per item and sample)', labelNames: ['benchmark'], registers });
    this.stepSeconds = new Histogram({ name: 'vlm_step_seconds', help: 'Duration of scheduler step phases', labelNames: ['model', 'phase'], buckets: TTFT_BUCKETS, registers });
    // Remote models (REMOTE_MODELS): `remote` is the replica's configured base URL.
    this.remoteRequests = new Counter({ name: 'vlm_remote_requests_total', help: 'Requests sent to remote model replicas (each attempt counted)', labelNames: ['model', 'remote'], registers });
    this.remoteErrors = new Counter({ name: 'vlm_remote_errors_total', help: 'Requests to remote model replicas that failed, by error code', labelNames: ['model', 'remote', 'code'], registers });
    this.remoteDuration = new Histogram({ name: 'vlm_remote_request_duration_seconds', help: 'Duration of requests to remote model replicas', labelNames: ['model', 'remote'], buckets: REQUEST_BUCKETS, registers });
    this.remoteInFlight = new Gauge({ name: 'vlm_remote_in_flight', help: 'Requests in flight to each remote model replica', labelNames: ['model', 'remote'], registers });
    const trainingCounts = () => this.trainingCounts?.();
    this.trainJobs = new Gauge({
      name: 'vlm_train_jobs',
      help: 'Training jobs by status',
      labelNames: ['status'],
      registers,
      // Counted from the database at each scrape, so it is right after restarts too.
      collect() {
        const counts = trainingCounts();
        if (counts) for (const status of JOB_STATUSES) this.set({ status }, counts[status]);
      },
    });
    this.trainReward = new Gauge({ name: 'vlm_train_reward', help: 'Mean reward of the latest training step', labelNames: ['job'], registers });
    this.trainCompletionLength = new Gauge({ name: 'vlm_train_completion_length', help: 'Mean completion length (tokens) of the latest training step', labelNames: ['job'], registers });
  }

  /** Keep the training gauges current from the job manager; returns a function that stops it. */
  followTraining(source: TrainingSource): () => void {
    this.trainingCounts = () => source.counts();
    const record = (job: string, metrics: Record<string, unknown>) => {
      if (typeof metrics.reward === 'number') this.trainReward.set({ job }, metrics.reward);
      if (typeof metrics.completion_length === 'number') this.trainCompletionLength.set({ job }, metrics.completion_length);
    };
    for (const job of source.list()) if (job.metrics) record(job.id, job.metrics);
    const unfollow = source.onEvent((event) => {
      if (event.type === 'metrics') record(event.jobId, event.metrics);
    });
    return () => {
      unfollow();
      this.trainingCounts = undefined;
    };
  }

  /** The engine's observer: keeps the queue/batch gauges and token counters current. */
  engineObserver(): EngineObserver {
    return {
      onStep: (model: string, result: StepResult, waiting: number, running: number, callMs: number) => {
        this.waiting.set({ model }, waiting);
        this.running.set({ model }, running);
        this.kvCacheBytes.set({ model }, result.kvBytes);
        if (result.batchSize) {
          this.batchSize.observe({ model }, result.batchSize);
          this.stepSeconds.observe({ model, phase: 'decode' }, result.decodeMs / 1000 / Math.max(1, result.decodeSteps));
        }
        if (result.prefilled.length) {
          this.stepSeconds.observe({ model, phase: 'prefill' }, result.prefillMs / 1000);
          this.promptTokens.inc({ model }, result.prefillTokens);
        }
        if (result.visionMs) this.stepSeconds.observe({ model, phase: 'vision' }, result.visionMs / 1000);
        // Time of the step outside the worker's runs: thread hops and a busy main thread.
        this.stepSeconds.observe({ model, phase: 'overhead' }, Math.max(0, callMs - result.prefillMs - result.decodeMs) / 1000);
        if (result.imagesEncoded) this.imageFeatures.inc({ model, source: 'encoded' }, result.imagesEncoded);
        if (result.imagesFromCache) this.imageFeatures.inc({ model, source: 'cache' }, result.imagesFromCache);
        if (result.prefilled.length > result.promptsFromCache) this.promptPrefills.inc({ model, source: 'computed' }, result.prefilled.length - result.promptsFromCache);
        if (result.promptsFromCache) this.promptPrefills.inc({ model, source: 'cache' }, result.promptsFromCache);
      },
      onRemoteRequest: (model: string, remote: string, code: string | null, seconds: number) => {
        this.remoteRequests.inc({ model, remote });
        this.remoteDuration.observe({ model, remote }, seconds);
        if (code !== null) this.remoteErrors.inc({ model, remote, code });
      },
      onRemoteInFlight: (model: string, remote: string, inFlight: number) => {
        this.remoteInFlight.set({ model, remote }, inFlight);
      },
      onRequestDone: (model: string, stats: RequestStats) => {
        this.generationTokens.inc({ model }, stats.completionTokens);
        if (stats.firstTokenMs !== null) this.timeToFirstToken.observe({ model }, stats.firstTokenMs / 1000);
        if (stats.completionTokens > 1) this.timePerOutputToken.observe({ model }, stats.decodeMs / 1000 / (stats.completionTokens - 1));
      },
    };
  }
}
