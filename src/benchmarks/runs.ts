// Evaluation runs: a benchmark split scored through the engine's batching scheduler, stored
// response by response in SQLite (one per item, or `samples` per item). Runs interrupted by a crash
// or restart resume where they stopped, without re-scoring a finished sample; cancelled runs keep
// their predictions. A run can also be made from predictions generated elsewhere (importPredictions).
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { GenerateRequest, GenerateResult } from '../engine/engine';
import { EngineError } from '../engine/errors';
import { conflict, invalidInput, ServiceError, shuttingDown, unprocessable } from '../errors';
import { promptOpensThink, PromptTemplate } from '../engine/prompts';
import { formatReward, hasReflection } from '../engine/rewards';
import { MAX_SEED, resolveSamplingParams, SamplingParams } from '../engine/sampling/params';
import { extractAnswer, isCorrect, matchedOptions, scoreRun, Strategy, voteKey } from './scoring';
import { doneKey, PredictionRow, RunRow, RunStatus, RunStore, TERMINAL } from './store';
import type { LevelName } from './spatial_synth';
import { BenchmarkName, BenchmarkSplit, EvalItem } from './types';

/** What selects a run's items and scores them, and the model's name: shared by generated and uploaded runs. */
export interface RunSelection {
  benchmark: BenchmarkName;
  split?: string;
  subsets?: string[];
  limit?: number;
  /** spatial-synth only: the generator level (docs/spatial-synth.md "Levels"); absent means standard. */
  level?: LevelName;
  template: PromptTemplate;
  strategy: Strategy;
  model: string;
}

export interface EvaluateParams extends RunSelection {
  maxNewTokens: number;
  /** Responses per item (default 1). */
  samples?: number;
  /** Sampling of every response (default greedy: temperature 0). */
  temperature?: number;
  topP?: number;
  /** Response s of item i is drawn with seed + i * samples + s (mod 2^53), so each is reproducible. */
  seed?: number;
}

/** A run scored from predictions generated elsewhere; `model` is a label for whoever made them. */
export interface UploadParams extends RunSelection {
  origin: 'uploaded';
}

/** One uploaded response, as parsed (src/benchmarks/uploads.ts). */
export interface UploadedPrediction {
  /** 1-based line of the upload, for error messages. */
  line: number;
  id: string;
  sample: number;
  prediction: string;
  completionTokens: number | null;
}

/** Most responses per item a run may ask for (samples) or an upload may hold. */
export const MAX_SAMPLES = 256;

/** What the runs need from the engine: whole results, and overload errors to back off on. */
export interface Generator {
  generateText(request: GenerateRequest): Promise<GenerateResult>;
}

/** What selects a run's items. */
export type SplitSelection = Pick<EvaluateParams, 'benchmark' | 'split' | 'subsets' | 'limit' | 'level'>;
export type SplitLoader = (params: SplitSelection) => Promise<BenchmarkSplit>;

export interface RunsOptions {
  /** Items of one run in flight at once: the engine batches them (its batch size is a good value). */
  concurrency: number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface RunView {
  id: string;
  benchmark: string;
  split: string;
  model: string;
  status: RunStatus;
  progress: { done: number; total: number };
  result: unknown | null;
  error?: string;
  params: EvaluateParams | UploadParams;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

interface Active {
  abort: AbortController;
  finished: Promise<void>;
}

/** Runs whose split is kept loaded for item look-ups (the dashboard's predictions browser). */
const ITEM_CACHE_RUNS = 4;

export class EvalRuns {
  private readonly active = new Map<string, Active>();
  private readonly itemListeners = new Set<(benchmark: string, correct: boolean) => void>();
  /** Loaded splits by run id, for item(); the oldest is dropped past ITEM_CACHE_RUNS. */
  private readonly itemCache = new Map<string, Promise<Map<string, EvalItem>>>();
  private closed = false;

  constructor(
    private readonly store: RunStore,
    private readonly generator: Generator,
    private readonly loadSplit: SplitLoader,
    private readonly options: RunsOptions,
  ) {}

  /** Validate and load the split (errors are the caller's 4xx), record the run, start it. */
  async create(params: EvaluateParams): Promise<RunView> {
    if (this.closed) throw shuttingDown('runs');
    const split = await this.loadSplit(params);
    if (!split.items.length) throw unprocessable('benchmark_empty', `${params.benchmark} ${split.split} has no items`);
    const id = newRunId();
    this.store.insertRun({
      id,
      benchmark: params.benchmark,
      split: split.split,
      model: params.model,
      template: params.template,
      strategy: params.strategy,
      params: JSON.stringify(params),
      status: 'queued',
      total: split.items.length * (params.samples ?? 1),
    });
    const accepted = this.view(this.store.getRun(id)!);
    this.start(id, params, split);
    return accepted;
  }

  /**
   * A finished run from predictions generated elsewhere, scored like a generated run (same
   * extraction, matching and aggregation). Every response is checked against the split first:
   * an unknown item, a repeated (item, sample), or an item or sample without a response is the
   * caller's 4xx naming the line or item, and then nothing is stored. The run and its predictions
   * are stored in one transaction.
   */
  async importPredictions(params: UploadParams, uploaded: readonly UploadedPrediction[]): Promise<RunView> {
    if (this.closed) throw shuttingDown('runs');
    const split = await this.loadSplit(params);
    if (!split.items.length) throw unprocessable('benchmark_empty', `${params.benchmark} ${split.split} has no items`);
    if (!uploaded.length) throw invalidInput('predictions_empty', 'the upload holds no predictions: send one JSON line {"id", "prediction"} per response');
    const byId = new Map(split.items.map((item, index) => [item.record.id, { item, index }]));
    const seen = new Map<string, number>();
    let samples = 0;
    for (const p of uploaded) {
      if (!byId.has(p.id)) {
        const hint = params.limit === undefined && !params.subsets?.length ? '' : ' as selected by limit and subsets';
        throw invalidInput('prediction_unknown_item', `line ${p.line}: item ${JSON.stringify(p.id.slice(0, 200))} is not in ${params.benchmark} ${split.split}${hint}`);
      }
      const key = doneKey(p.id, p.sample);
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        throw invalidInput('prediction_duplicate', `line ${p.line}: item ${JSON.stringify(p.id.slice(0, 200))} sample ${p.sample} was already given on line ${earlier}; number an item's responses with "sample": 0, 1, ...`);
      }
      seen.set(key, p.line);
      samples = Math.max(samples, p.sample + 1);
    }
    // Every item of the split needs samples 0 .. samples-1: a partial upload would score a different set.
    for (const item of split.items) {
      for (let sample = 0; sample < samples; sample++) {
        if (!seen.has(doneKey(item.record.id, sample))) {
          const missing = split.items.length * samples - uploaded.length;
          throw invalidInput(
            'predictions_incomplete',
            `item ${JSON.stringify(item.record.id)} has no response for sample ${sample}; every item of ${params.benchmark} ${split.split} (${split.items.length} items${params.limit === undefined ? '' : ` with limit ${params.limit}`}) needs samples 0 to ${samples - 1} (${missing} response(s) missing)`,
          );
        }
      }
    }
    const opensThink = promptOpensThink(params.template);
    const rows = uploaded.map((p): Omit<PredictionRow, 'created_at' | 'run_id'> => {
      const { item, index } = byId.get(p.id)!;
      const { record } = item;
      const extracted = extractAnswer(p.prediction, params.strategy, opensThink);
      return {
        item_index: index,
        item_id: record.id,
        sample: p.sample,
        task: record.task,
        source: record.source,
        gold: record.answer,
        gold_text: record.answer_text,
        prediction: p.prediction,
        extracted,
        correct: extracted !== null && isCorrect(extracted, record.answer, record.choices) ? 1 : 0,
        // The engine's formatOk: the format reward of the completion (src/engine/rewards.ts).
        format_ok: formatReward(p.prediction),
        completion_tokens: p.completionTokens,
      };
    });
    const id = newRunId();
    const stored: UploadParams = { ...params, ...(params.benchmark === 'spatial-synth' ? { level: params.level ?? 'standard' } : {}) };
    const result = runResult(rows, split, stored, samples);
    const row = this.store.insertFinishedRun(
      { id, benchmark: params.benchmark, split: split.split, model: params.model, template: params.template, strategy: params.strategy, params: JSON.stringify({ ...stored, samples }), total: rows.length },
      rows,
      result,
    );
    return this.view(row);
  }

  /** Follow scored items (metrics); returns a function that stops it. */
  onItem(listener: (benchmark: string, correct: boolean) => void): () => void {
    this.itemListeners.add(listener);
    return () => this.itemListeners.delete(listener);
  }

  get(id: string): RunView | undefined {
    const row = this.store.getRun(id);
    return row && this.view(row);
  }

  list(): RunView[] {
    return this.store.listRuns().map((r) => this.view(r));
  }

  predictions(id: string) {
    return this.store.iteratePredictions(id);
  }

  /**
   * One item of a run's split (its question, choices and images), looked up by item id: only the
   * items the run's own parameters select can be reached. The split is loaded again from the
   * benchmark data (generated, for spatial-synth) and kept for the next look-ups. Undefined for
   * an unknown run or an item id the split does not hold.
   */
  async item(runId: string, itemId: string): Promise<EvalItem | undefined> {
    const row = this.store.getRun(runId);
    if (!row) return undefined;
    let items = this.itemCache.get(runId);
    if (!items) {
      const params = JSON.parse(row.params) as SplitSelection;
      items = this.loadSplit(params).then((split) => new Map(split.items.map((item) => [item.record.id, item])));
      this.itemCache.set(runId, items);
      items.catch(() => this.itemCache.delete(runId));
      while (this.itemCache.size > ITEM_CACHE_RUNS) this.itemCache.delete(this.itemCache.keys().next().value!);
    }
    return (await items).get(itemId);
  }

  /** Stop a run; its predictions so far stay. Returns undefined for an unknown id. */
  async cancel(id: string): Promise<RunView | undefined> {
    const row = this.store.getRun(id);
    if (!row) return undefined;
    if (TERMINAL.has(row.status)) {
      throw conflict('run_finished', `run ${id} has already ${row.status === 'cancelled' ? 'been cancelled' : row.status}`);
    }
    this.store.finish(id, 'cancelled', {});
    const active = this.active.get(id);
    active?.abort.abort();
    await active?.finished;
    return this.get(id);
  }

  /** Resolves when the run has reached a terminal status. */
  async wait(id: string): Promise<RunView | undefined> {
    await this.active.get(id)?.finished;
    return this.get(id);
  }

  /** Restart every run the previous process left queued or running. */
  resumeInterrupted(): string[] {
    const resumed: string[] = [];
    for (const row of this.store.unfinishedRuns()) {
      if (this.active.has(row.id)) continue;
      const params = JSON.parse(row.params) as EvaluateParams;
      this.options.log?.('resuming evaluation run', { id: row.id, done: row.done, total: row.total });
      this.start(row.id, params, null);
      resumed.push(row.id);
    }
    return resumed;
  }

  /** Stop processing (shutdown): runs stay 'running' in the database and resume at next start. */
  async close(): Promise<void> {
    this.closed = true;
    for (const active of this.active.values()) active.abort.abort();
    await Promise.all([...this.active.values()].map((a) => a.finished));
  }

  private start(id: string, params: EvaluateParams, split: BenchmarkSplit | null) {
    const abort = new AbortController();
    // Every in-flight item of the run listens to this one signal.
    setMaxListeners(0, abort.signal);
    const finished = this.process(id, params, split, abort.signal).finally(() => this.active.delete(id));
    this.active.set(id, { abort, finished });
  }

  private async process(id: string, params: EvaluateParams, loaded: BenchmarkSplit | null, signal: AbortSignal): Promise<void> {
    try {
      const split = loaded ?? (await this.loadSplit(params));
      const samples = params.samples ?? 1;
      // Progress counts responses: items x samples.
      this.store.markRunning(id, split.items.length * samples);
      const done = this.store.doneSamples(id);
      const todo = split.items
        .flatMap((item, index) => Array.from({ length: samples }, (_, sample) => ({ item, index, sample })))
        .filter(({ item, sample }) => !done.has(doneKey(item.record.id, sample)));
      let next = 0;
      // The first error stops every worker; the run fails once none has an item in flight (no
      // prediction is stored after its failure).
      let failure: { error: unknown } | undefined;
      const worker = async () => {
        while (next < todo.length && !signal.aborted && !failure) {
          const { item, index, sample } = todo[next++];
          try {
            await this.scoreItem(id, params, item, index, sample, signal);
          } catch (error) {
            failure ??= { error };
          }
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency) }, worker));
      if (signal.aborted) return; // cancelled (status already set) or shutting down (resumes later)
      if (failure) throw failure.error;
      this.store.finish(id, 'succeeded', { result: runResult(this.store.predictions(id), split, params, samples) });
    } catch (error) {
      if (signal.aborted) return;
      const message = error instanceof Error ? error.message : String(error);
      this.options.log?.('evaluation run failed', { id, error: message });
      try {
        this.store.finish(id, 'failed', { error: message });
      } catch (storeError) {
        // The database takes no writes (a full disk, say): the run stays unfinished there and is
        // resumed at the next start, its stored predictions kept.
        this.options.log?.('cannot store that an evaluation run failed', { id, error: String(storeError) });
      }
    }
  }

  private async scoreItem(id: string, params: EvaluateParams, item: EvalItem, index: number, sample: number, signal: AbortSignal) {
    const { record } = item;
    let result: GenerateResult | null = null;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const images = await item.loadImages();
        result = await this.generator.generateText({
          model: params.model,
          prompt: { template: params.template, question: record.prompt },
          images,
          maxNewTokens: params.maxNewTokens,
          sampling: samplingOf(params, index, sample),
          signal,
        });
        break;
      } catch (error) {
        if (signal.aborted) return;
        // Online traffic may fill the queue: wait and retry rather than fail the run.
        if (error instanceof EngineError && error.kind === 'overloaded' && error.code !== 'shutting_down') {
          await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** Math.min(attempt, 5))));
          continue;
        }
        // An item whose input cannot be used (e.g. an undecodable image, a malformed data file) counts as unanswered.
        if (unusableInput(error)) {
          this.options.log?.('evaluation item unusable', { id, item: record.id, error: error.message });
          break;
        }
        throw error;
      }
    }
    if (signal.aborted) return;
    const text = result?.text ?? '';
    const extracted = result ? extractAnswer(text, params.strategy, promptOpensThink(params.template)) : null;
    const correct = extracted !== null && isCorrect(extracted, record.answer, record.choices);
    this.store.addPrediction({
      run_id: id,
      item_index: index,
      item_id: record.id,
      sample,
      task: record.task,
      source: record.source,
      gold: record.answer,
      gold_text: record.answer_text,
      prediction: text,
      extracted,
      correct: correct ? 1 : 0,
      format_ok: result?.formatOk ? 1 : 0,
      completion_tokens: result?.usage.completionTokens ?? 0,
    });
    for (const listener of this.itemListeners) listener(params.benchmark, correct);
  }

  private view(row: RunRow): RunView {
    return {
      id: row.id,
      benchmark: row.benchmark,
      split: row.split,
      model: row.model,
      status: row.status,
      progress: { done: row.done, total: row.total },
      result: row.result ? JSON.parse(row.result) : null,
      ...(row.error ? { error: row.error } : {}),
      params: JSON.parse(row.params),
      created_at: row.created_at,
      started_at: row.started_at,
      finished_at: row.finished_at,
    };
  }
}

function newRunId(): string {
  return `eval_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
}

/** The engine's or a loader's refusal of an item's input (400, 413, 415, 422), as opposed to a failure of the service. */
function unusableInput(error: unknown): error is EngineError | ServiceError {
  if (error instanceof EngineError) return ['invalid_input', 'unsupported_media', 'too_large', 'unprocessable'].includes(error.kind);
  return error instanceof ServiceError && [400, 413, 415, 422].includes(error.status);
}

const SEED_MODULUS = BigInt(MAX_SEED) + 1n;

/** Sampling of response `sample` of item `index`: greedy unless the run asks for a temperature. */
function samplingOf(params: EvaluateParams, index: number, sample: number): SamplingParams {
  const sampling = resolveSamplingParams({ temperature: params.temperature, topP: params.topP });
  if (params.seed !== undefined) {
    // One seed per response, the same after a resume: the stored responses stay reproducible.
    sampling.seed = Number((BigInt(params.seed) + BigInt(index) * BigInt(params.samples ?? 1) + BigInt(sample)) % SEED_MODULUS);
  }
  return sampling;
}

/** A run's result as the API returns it (docs/api.md, "Runs"): fractions in [0, 1], labelled with strategy and template. */
function runResult(
  rows: readonly Pick<PredictionRow, 'item_id' | 'sample' | 'task' | 'source' | 'prediction' | 'extracted' | 'correct' | 'format_ok' | 'completion_tokens'>[],
  split: BenchmarkSplit,
  params: Pick<EvaluateParams, 'benchmark' | 'strategy' | 'template' | 'level'>,
  samples: number,
) {
  const choices = new Map(split.items.map((item) => [item.record.id, item.record.choices]));
  const score = scoreRun(
    rows.map((r) => {
      const options = choices.get(r.item_id) ?? [];
      return {
        item: r.item_id,
        sample: r.sample,
        task: r.task,
        source: r.source,
        correct: r.correct === 1,
        formatOk: r.format_ok === 1,
        vote: voteKey(r.extracted, options),
        offOption: matchedOptions(r.extracted, options).length === 0,
        reflection: hasReflection(r.prediction),
        completionTokens: r.completion_tokens,
      };
    }),
    params.benchmark,
    samples,
  );
  return {
    n: score.n,
    samples: score.samples,
    responses: score.responses,
    accuracy: score.accuracy,
    format_rate: score.formatRate,
    pass_at_k: score.pass_at_k,
    majority_accuracy: score.majority_accuracy,
    stats: score.stats,
    by_task: score.byTask,
    official: score.official,
    strategy: params.strategy,
    template: params.template,
    ...(params.level === undefined ? {} : { level: params.level }),
  };
}
