// The engine's narrow interface: generate (streamed or whole), list models, health, drain and
// dispose. It turns a request (template + question, or chat messages, plus image bytes) into
// token ids, M-RoPE positions and pixel values, hands the sequence to the model's scheduler, and
// turns the sampled tokens back into text, think/answer and format_ok. No HTTP here.
import { parseCompletion } from './rewards';
import { EngineError } from './errors';
import { imageCacheKey } from './feature_cache';
import { ByteLru } from './lru';
import { DtypeChoice } from './model_folder';
import { preprocessImage } from './qwen2_vl/image_processing';
import { promptInputs } from './qwen2_vl/prompt_inputs';
import { LoadedModel, ModelEntry, ModelRegistry } from './registry';
import type { RemoteModelSpec } from './remote/config';
import { RemoteModel } from './remote/remote_model';
import { FinishReason, StepResult } from './runner/protocol';
import { DEFAULT_SAMPLING_PARAMS, SamplingParams } from './sampling/params';
import { SchedulerOptions, SequenceImage, SequenceTimings } from './scheduler';
import { PromptTemplate, promptOpensThink, renderPrompt } from './prompts';
import { ChatMessage } from './tokenizer';

export interface EngineOptions {
  /** Folders whose subfolders with an onnx/ directory are models. */
  modelRoots: string[];
  /** Model folders named explicitly, beside the roots' folders. */
  modelFolders?: { name: string; dir: string }[];
  /** Model used when a request names none. */
  defaultModel: string;
  dtype?: DtypeChoice;
  /** Intra-op threads per ONNX session. */
  threads?: number;
  /** onnxruntime execution providers in order of preference (EXECUTION_PROVIDERS; default cpu). */
  executionProviders?: string[];
  /** Bytes of prefilled prompts each model's worker keeps for prompts seen again (0: none). */
  promptCacheBytes?: number;
  /** Bytes of preprocessed pixels kept for images seen again, all models together (0: none). */
  imageCacheBytes?: number;
  scheduler: SchedulerOptions;
  memoryBudgetBytes: number;
  /** Image resize bounds (docs/qwen2-vl.md, "Image tokens"); MAX_PIXELS 401,408 as in training. */
  maxPixels: number;
  minPixels?: number;
  /** Images declaring more pixels than this are refused before decoding. */
  maxInputPixels: number;
  defaultMaxNewTokens: number;
  maxNewTokensCap: number;
  /** Longest prompt (tokens, images included) accepted. */
  maxPromptTokens: number;
  /** Default deadline of a request, in milliseconds. */
  requestTimeoutMs: number;
  /** Models served elsewhere (REMOTE_MODELS, docs/remote-models.md). */
  remoteModels?: RemoteModelSpec[];
  /** Requests in flight per remote replica, and the longest silence from one (ms). */
  remote?: { maxInFlight: number; timeoutMs: number };
}

export interface EngineObserver {
  /** `callMs`: the step's round trip from the scheduler (SchedulerObserver.onStep). */
  onStep?(model: string, result: StepResult, waiting: number, running: number, callMs: number): void;
  onRequestDone?(model: string, stats: RequestStats): void;
  /** One request to a remote replica ended (`code` null: it succeeded). */
  onRemoteRequest?(model: string, remote: string, code: string | null, seconds: number): void;
  onRemoteInFlight?(model: string, remote: string, inFlight: number): void;
}

export interface RequestStats {
  promptTokens: number;
  completionTokens: number;
  firstTokenMs: number | null;
  decodeMs: number;
  finishReason: FinishReason;
}

export type PromptInput =
  | { template: PromptTemplate; question: string }
  /** A chat conversation rendered with the model's chat template (image parts in order). */
  | { template: 'chat'; messages: ChatMessage[] };

export interface GenerateRequest {
  model?: string;
  prompt: PromptInput;
  /** Encoded image files (PNG, JPEG, WebP) in prompt order. */
  images: Uint8Array[];
  /** Resolved and already checked where the request came in (request schemas' toSamplingParams); greedy when absent. */
  sampling?: SamplingParams;
  maxNewTokens?: number;
  /** Generate exactly maxNewTokens without stopping at end tokens (for benchmarks). */
  ignoreEos?: boolean;
  /** Milliseconds from now; the engine's default otherwise. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface GenerateResult {
  model: string;
  template: string;
  text: string;
  think: string | null;
  answer: string | null;
  formatOk: boolean;
  finishReason: FinishReason;
  /** The generated token ids (the stop token included). */
  tokenIds: number[];
  usage: { promptTokens: number; completionTokens: number; imageTokens: number };
  timings: { queueMs: number; prefillMs: number; decodeMs: number; totalMs: number; firstTokenMs: number | null };
}

export type GenerateEvent = { type: 'delta'; text: string } | { type: 'done'; result: GenerateResult };

interface PreparedPrompt {
  template: string;
  opensThink: boolean;
  inputIds: number[];
  positionIds: number[];
  nextPosition: number;
  images: SequenceImage[];
  imageTokens: number;
}

export class Engine {
  readonly registry: ModelRegistry;
  private disposed = false;
  private draining = false;
  private readonly observers = new Set<EngineObserver>();
  /**
   * Preprocessed images by model and image key: an image sent again (several samples of an item,
   * a chat that sends its history each turn) is not decoded, resized and normalised again.
   */
  private readonly preprocessed: ByteLru<{ grid: [number, number, number]; tokens: number; pixels: Float32Array }>;
  private readonly remotes = new Map<string, RemoteModel>();

  constructor(readonly options: EngineOptions) {
    this.preprocessed = new ByteLru(options.imageCacheBytes ?? 0);
    this.registry = new ModelRegistry({
      roots: options.modelRoots,
      folders: options.modelFolders,
      dtype: options.dtype,
      threads: options.threads,
      executionProviders: options.executionProviders,
      promptCacheBytes: options.promptCacheBytes,
      memoryBudgetBytes: options.memoryBudgetBytes,
      scheduler: options.scheduler,
      image: { maxPixels: options.maxPixels, minPixels: options.minPixels },
      observer: (model) => ({
        onStep: (result, waiting, running, callMs) => {
          for (const o of this.observers) o.onStep?.(model, result, waiting, running, callMs);
        },
      }),
    });
    const local = new Map(options.remoteModels?.length ? this.registry.list().map((m) => [m.name, m.dir]) : []);
    for (const spec of options.remoteModels ?? []) {
      if (local.has(spec.name)) {
        throw new Error(`invalid configuration: REMOTE_MODELS: model "${spec.name}" is also the local model folder ${local.get(spec.name)}; give the remote model another name`);
      }
      const remote = new RemoteModel(spec, {
        maxInFlight: options.remote?.maxInFlight ?? 8,
        maxWaiting: options.scheduler.maxWaiting,
        timeoutMs: options.remote?.timeoutMs ?? 60_000,
        requestTimeoutMs: options.requestTimeoutMs,
        maxInputPixels: options.maxInputPixels,
        observer: {
          onRemoteRequest: (model, url, code, seconds) => {
            for (const o of this.observers) o.onRemoteRequest?.(model, url, code, seconds);
          },
          onRemoteInFlight: (model, url, inFlight) => {
            for (const o of this.observers) o.onRemoteInFlight?.(model, url, inFlight);
          },
          onResult: (model, result) => {
            const stats: RequestStats = {
              promptTokens: result.usage.promptTokens,
              completionTokens: result.usage.completionTokens,
              firstTokenMs: result.timings.firstTokenMs,
              decodeMs: result.timings.decodeMs,
              finishReason: result.finishReason,
            };
            for (const o of this.observers) o.onRequestDone?.(model, stats);
          },
        },
      });
      this.remotes.set(spec.name, remote);
    }
  }

  /** The remote models (REMOTE_MODELS), by name. */
  remoteModels(): RemoteModel[] {
    return [...this.remotes.values()];
  }

  /**
   * Asks every remote replica which models it serves (GET <url>/models). Throws when a replica
   * answers without the configured model id (a configuration mistake); returns a message for each
   * replica that cannot be reached (requests to it fail with 502 until it answers).
   */
  async checkRemotes(timeoutMs = 10_000): Promise<string[]> {
    const checks = await Promise.all(this.remoteModels().map((model) => model.check(timeoutMs)));
    const wrong = checks.flatMap((c) => c.wrong);
    if (wrong.length) throw new Error(`invalid configuration: REMOTE_MODELS: ${wrong.join('; ')}`);
    return checks.flatMap((c) => c.unreachable).map((m) => `REMOTE_MODELS: ${m}; requests to it fail with 502 until it answers`);
  }

  /** Follow steps and finished requests (metrics); returns a function that stops it. */
  observe(observer: EngineObserver): () => void {
    this.observers.add(observer);
    // Every remote replica's in-flight count is known from the start (0 before any request).
    for (const model of this.remotes.values()) for (const replica of model.replicas) observer.onRemoteInFlight?.(model.name, replica.url, replica.inFlight);
    return () => this.observers.delete(observer);
  }

  listModels(): ModelEntry[] {
    return [...this.registry.list(), ...this.remoteModels().map((m) => ({ name: m.name, dir: '', loaded: true, remote: true }))];
  }

  /**
   * Opens a model without generating: a local model's sessions (a loaded one is left as it is),
   * or, for a remote model, asks its replicas whether they serve it. Throws 404 model_not_found
   * for an unknown name; a remote model none of whose replicas answers, or one whose replica
   * serves other models, is 502 remote_unavailable.
   */
  async load(name: string, timeoutMs = 10_000): Promise<ModelEntry> {
    this.refuseWhenStopping();
    const remote = this.remotes.get(name);
    if (remote) {
      const { unreachable, wrong } = await remote.check(timeoutMs);
      if (wrong.length) throw new EngineError('remote_unavailable', 'remote_error', wrong.join('; '));
      if (unreachable.length === remote.replicas.length) throw new EngineError('remote_unavailable', 'remote_unreachable', unreachable.join('; '));
    } else {
      this.registry.release(await this.registry.acquire(name));
    }
    return this.listModels().find((m) => m.name === name)!;
  }

  /** Load the default model at start, so that the first user does not wait for it (readiness follows). */
  async warmup(): Promise<void> {
    // A remote default model is asked at start already (checkRemotes).
    if (this.remotes.has(this.options.defaultModel)) return;
    await this.load(this.options.defaultModel);
  }

  /** The whole result of a request (the streamed deltas are dropped). */
  async generateText(request: GenerateRequest): Promise<GenerateResult> {
    // A remote request held whole can move to another replica after a failure at any point.
    for await (const event of this.events(request, true)) if (event.type === 'done') return event.result;
    throw new EngineError('model_error', 'no_result', 'generation ended without a result');
  }

  generate(request: GenerateRequest): AsyncGenerator<GenerateEvent> {
    return this.events(request, false);
  }

  /** Every request, local or remote: the engine's own checks, then the model that serves it. */
  private async *events(request: GenerateRequest, buffered: boolean): AsyncGenerator<GenerateEvent> {
    this.refuseWhenStopping();
    // A question template takes at most one image: refused before any image is decoded or sent.
    if (request.prompt.template !== 'chat' && request.images.length > 1) {
      throw new EngineError('invalid_input', 'too_many_images', `template ${request.prompt.template} takes at most one image`);
    }
    const name = request.model ?? this.options.defaultModel;
    const remote = this.remotes.get(name);
    if (remote) {
      yield* remote.generate(request, buffered, this.maxNewTokensOf(request));
      return;
    }
    const started = Date.now();
    const model = await this.registry.acquire(name);
    try {
      yield* this.run(model, request, started);
    } finally {
      this.registry.release(model);
    }
  }

  private refuseWhenStopping(): void {
    if (this.disposed || this.draining) {
      throw new EngineError('overloaded', 'shutting_down', 'the server is shutting down and takes no new requests', { retryAfterSeconds: 5 });
    }
  }

  /** The request's token budget, local or remote: its own or the default, within the cap. */
  private maxNewTokensOf(request: GenerateRequest): number {
    const maxNewTokens = request.maxNewTokens ?? this.options.defaultMaxNewTokens;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > this.options.maxNewTokensCap) {
      throw new EngineError('invalid_input', 'max_new_tokens', `max_new_tokens must be an integer from 1 to ${this.options.maxNewTokensCap}`);
    }
    return maxNewTokens;
  }

  private async *run(model: LoadedModel, request: GenerateRequest, started: number): AsyncGenerator<GenerateEvent> {
    const sampling = request.sampling ?? DEFAULT_SAMPLING_PARAMS;
    const maxNewTokens = this.maxNewTokensOf(request);
    const prompt = await this.prepare(model, request);
    const { tokenizer } = model;

    // Tokens arrive from the scheduler through callbacks; this generator yields them in order.
    type Item = { tokens: number[]; stopped: boolean } | { finish: FinishReason; timings: SequenceTimings } | { error: EngineError };
    const queue: Item[] = [];
    let wake: (() => void) | null = null;
    const push = (item: Item) => {
      queue.push(item);
      wake?.();
      wake = null;
    };
    const abort = new AbortController();
    const forward = () => abort.abort();
    request.signal?.addEventListener('abort', forward, { once: true });
    if (request.signal?.aborted) abort.abort();

    model.scheduler.submit(
      {
        inputIds: prompt.inputIds,
        positionIds: prompt.positionIds,
        nextPosition: prompt.nextPosition,
        images: prompt.images,
        sampling,
        maxNewTokens,
        ignoreEos: request.ignoreEos,
        vocabLimit: tokenizer.size,
        deadline: started + (request.timeoutMs ?? this.options.requestTimeoutMs),
        signal: abort.signal,
      },
      {
        onTokens: (tokens, stopped) => push({ tokens, stopped }),
        onFinish: (finish, timings) => push({ finish, timings }),
        onError: (error) => push({ error }),
      },
    );

    const generated: number[] = [];
    const decoder = tokenizer.incrementalDecoder({ skipSpecialTokens: true });
    let firstTokenMs: number | null = null;
    try {
      for (;;) {
        if (!queue.length) await new Promise<void>((resolve) => (wake = resolve));
        const item = queue.shift()!;
        if ('tokens' in item) {
          if (firstTokenMs === null) firstTokenMs = Date.now() - started;
          let delta = '';
          item.tokens.forEach((token, i) => {
            generated.push(token);
            // The end token that stopped the sequence is counted, not shown.
            if (!(item.stopped && i === item.tokens.length - 1)) delta += decoder.push(token);
          });
          if (delta) yield { type: 'delta', text: delta };
          continue;
        }
        if ('error' in item) throw item.error;
        const tail = decoder.flush();
        if (tail) yield { type: 'delta', text: tail };
        const shown = item.finish === 'stop' ? generated.slice(0, -1) : generated;
        const text = tokenizer.decode(shown, { skipSpecialTokens: true });
        const parsed = parseCompletion(text, prompt.opensThink);
        const result: GenerateResult = {
          model: model.name,
          template: prompt.template,
          text,
          think: parsed.think,
          answer: parsed.answer,
          formatOk: parsed.formatOk,
          finishReason: item.finish,
          tokenIds: generated,
          usage: { promptTokens: prompt.inputIds.length, completionTokens: generated.length, imageTokens: prompt.imageTokens },
          timings: { ...item.timings, totalMs: Date.now() - started, firstTokenMs },
        };
        const stats: RequestStats = {
          promptTokens: prompt.inputIds.length,
          completionTokens: generated.length,
          firstTokenMs,
          decodeMs: item.timings.decodeMs,
          finishReason: item.finish,
        };
        for (const o of this.observers) o.onRequestDone?.(model.name, stats);
        yield { type: 'done', result };
        return;
      }
    } finally {
      request.signal?.removeEventListener('abort', forward);
      // The consumer stopped early (client gone): cancel the sequence in the scheduler.
      abort.abort();
    }
  }

  /** Prompt text -> ids with image tokens expanded, M-RoPE positions (qwen2_vl/prompt_inputs.ts), preprocessed images. */
  private async prepare(model: LoadedModel, request: GenerateRequest): Promise<PreparedPrompt> {
    const { tokenizer, folder } = model;
    const images = await Promise.all(
      request.images.map(async (bytes) => {
        const key = imageCacheKey(bytes, { minPixels: model.image.minPixels, maxPixels: model.image.maxPixels });
        const memoKey = `${model.name}|${key}`;
        let image = this.preprocessed.get(memoKey);
        let kept = image !== undefined;
        if (!image) {
          const processed = await preprocessImage(bytes, model.image, { maxInputPixels: this.options.maxInputPixels });
          image = { grid: processed.gridThw, tokens: processed.numImageTokens, pixels: processed.pixelValues };
          kept = this.preprocessed.set(memoKey, image, image.pixels.byteLength) !== null;
        }
        // The scheduler hands the pixels over to the worker thread (transferred, unusable after):
        // pixels the cache keeps go as a copy.
        return { key, grid: image.grid, tokens: image.tokens, pixels: kept ? image.pixels.slice() : image.pixels };
      }),
    );

    let text: string;
    let template: string;
    if (request.prompt.template === 'chat') {
      template = 'chat';
      const messages = request.prompt.messages;
      text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    } else {
      template = request.prompt.template;
      text = renderPrompt(request.prompt.template, request.prompt.question, images.length === 1, (messages) =>
        tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true }),
      );
    }
    const inputs = promptInputs(text, (t) => tokenizer.encode(t), images, folder, this.options.maxPromptTokens);
    return {
      template,
      opensThink: template !== 'chat' && promptOpensThink(template as PromptTemplate),
      ...inputs,
      images,
      imageTokens: images.reduce((sum, i) => sum + i.tokens, 0),
    };
  }

  /** Whether the default model is loaded (readiness). */
  isReady(): boolean {
    return this.remotes.has(this.options.defaultModel) || this.registry.loadedModels().some((m) => m.name === this.options.defaultModel);
  }

  /** Refuse new requests and resolve once every accepted request has finished. */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.all([this.registry.drain(), ...this.remoteModels().map((m) => m.drain())]);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.registry.dispose();
  }
}

export type { SamplingParams };
