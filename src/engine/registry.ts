// Every model folder under the model roots is a named model. Models load on first use (one worker
// each) and the least recently used idle ones are unloaded when the loaded models' weights exceed
// the memory budget.
import { EngineError } from './errors';
import { DtypeChoice, listModelFolders, ModelFolder, readModelFolder } from './model_folder';
import { ImageProcessorConfig, imageProcessorConfig } from './qwen2_vl/image_processing';
import { ModelRunner } from './runner/model_runner';
import { Scheduler, SchedulerObserver, SchedulerOptions } from './scheduler';
import { Tokenizer } from './tokenizer';

export interface RegistryOptions {
  roots: string[];
  /** Model folders named explicitly (e.g. MODEL_DIR), listed beside the roots' folders. */
  folders?: { name: string; dir: string }[];
  dtype?: DtypeChoice;
  threads?: number;
  /** onnxruntime execution providers in order of preference (EXECUTION_PROVIDERS; default cpu). */
  executionProviders?: string[];
  /** Bytes of prefilled prompts each worker keeps (PROMPT_CACHE_MB; 0: none). */
  promptCacheBytes?: number;
  /** Unload idle models beyond this many bytes of loaded weights (0 = no limit). */
  memoryBudgetBytes: number;
  scheduler: SchedulerOptions;
  /** Overrides of each model's preprocessor_config (the service's MAX_PIXELS). */
  image: { maxPixels?: number; minPixels?: number };
  observer?: (model: string) => SchedulerObserver;
}

export interface LoadedModel {
  name: string;
  folder: ModelFolder;
  runner: ModelRunner;
  scheduler: Scheduler;
  tokenizer: Tokenizer;
  image: ImageProcessorConfig;
  lastUsed: number;
  /** In-flight requests holding this model (it is not unloaded while any are). */
  users: number;
}

export interface ModelEntry {
  name: string;
  /** The model folder ('' for a remote model). */
  dir: string;
  loaded: boolean;
  /** Served elsewhere (REMOTE_MODELS, src/engine/remote/): no folder, never loaded here. */
  remote?: boolean;
}

export class ModelRegistry {
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private disposed = false;

  constructor(private readonly options: RegistryOptions) {}

  list(): ModelEntry[] {
    return listModelFolders(this.options.roots, this.options.folders).map(({ name, dir }) => ({ name, dir, loaded: this.loaded.has(name) }));
  }

  has(name: string): boolean {
    return this.list().some((m) => m.name === name);
  }

  loadedModels(): LoadedModel[] {
    return [...this.loaded.values()];
  }

  /** The loaded model, loading it first if needed; `release` it when the request is done. */
  async acquire(name: string): Promise<LoadedModel> {
    if (this.disposed) throw new EngineError('overloaded', 'shutting_down', 'the engine is shutting down', { retryAfterSeconds: 5 });
    let model = this.loaded.get(name);
    if (!model) {
      let pending = this.loading.get(name);
      if (!pending) {
        pending = this.load(name).finally(() => this.loading.delete(name));
        this.loading.set(name, pending);
      }
      model = await pending;
    }
    model.users += 1;
    model.lastUsed = Date.now();
    return model;
  }

  release(model: LoadedModel): void {
    model.users = Math.max(0, model.users - 1);
    model.lastUsed = Date.now();
    void this.enforceBudget();
  }

  private async load(name: string): Promise<LoadedModel> {
    const entry = listModelFolders(this.options.roots, this.options.folders).find((m) => m.name === name);
    if (!entry) {
      const known = this.list().map((m) => m.name);
      throw new EngineError('not_found', 'model_not_found', `no model named "${name}"; available: ${known.join(', ') || 'none'}`);
    }
    const folder = readModelFolder(entry.dir, { dtype: this.options.dtype, name });
    const tokenizer = await Tokenizer.fromModelDir(entry.dir);
    const image = imageProcessorConfig(folder.preprocessor, this.options.image);
    const runner = await ModelRunner.start(folder, {
      threads: this.options.threads,
      executionProviders: this.options.executionProviders,
      promptCacheBytes: this.options.promptCacheBytes,
    });
    const scheduler = new Scheduler(runner, this.options.scheduler, this.options.observer?.(name));
    const model: LoadedModel = { name, folder, runner, scheduler, tokenizer, image, lastUsed: Date.now(), users: 0 };
    this.loaded.set(name, model);
    await this.enforceBudget(name);
    return model;
  }

  /** Unload least-recently-used idle models while over budget (never `keep`). */
  private async enforceBudget(keep?: string) {
    const budget = this.options.memoryBudgetBytes;
    if (!budget) return;
    const total = () => [...this.loaded.values()].reduce((sum, m) => sum + m.folder.bytes, 0);
    const idle = [...this.loaded.values()]
      .filter((m) => m.name !== keep && m.users === 0 && !m.scheduler.runningCount && !m.scheduler.waitingCount)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const model of idle) {
      if (total() <= budget) break;
      await this.unload(model.name);
    }
  }

  async unload(name: string): Promise<void> {
    const model = this.loaded.get(name);
    if (!model) return;
    this.loaded.delete(name);
    await model.scheduler.drain();
    await model.runner.dispose();
  }

  /** Stop accepting requests and wait for every accepted one to finish. */
  async drain(): Promise<void> {
    await Promise.all([...this.loaded.values()].map((m) => m.scheduler.drain()));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await Promise.allSettled([...this.loading.values()]);
    await Promise.all([...this.loaded.keys()].map((name) => this.unload(name)));
  }
}
