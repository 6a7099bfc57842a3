// Messages between the scheduler (main thread) and the model worker thread that owns the ONNX
// sessions, the KV cache of the running batch and each sequence's sampler.
import type { EngineErrorKind } from '../errors';
import type { ModelFolder } from '../model_folder';
import type { ModelInfo } from '../qwen2_vl/model_info';
import type { SamplingParams } from '../sampling/params';

export interface WorkerInit {
  /** The folder as read on the main thread, with its graph files (dtypes) chosen. */
  folder: ModelFolder;
  /** Intra-op threads of each ONNX session. */
  threads?: number;
  /** onnxruntime execution providers in order of preference (default: cpu). */
  executionProviders?: string[];
  /** Bytes of prefilled prompts the worker keeps for prompts seen again (prompt_cache.ts; 0: none). */
  promptCacheBytes?: number;
}

export interface ImageInput {
  /** Content key of the image and its preprocessing settings (feature-cache key). */
  key: string;
  grid: [number, number, number];
  /** Image tokens this image occupies in the prompt. */
  tokens: number;
  /** Omitted when the scheduler knows the worker holds this key's features. */
  pixels?: Float32Array;
  /** Keep the features under `key` after use. */
  cache: boolean;
}

export interface AdmitRequest {
  seqId: number;
  /** Prompt ids with every image placeholder already expanded to its token count. */
  inputIds: number[];
  /** M-RoPE positions of the prompt, axis-major: [3 * inputIds.length]. */
  positionIds: number[];
  /** Position of the first generated token (max prompt position + 1, docs/qwen2-vl.md, "M-RoPE position ids"). */
  nextPosition: number;
  images: ImageInput[];
  sampling: SamplingParams;
  maxNewTokens: number;
  /** Generate exactly maxNewTokens, not stopping at end tokens (benchmarks). */
  ignoreEos: boolean;
  /** Ids >= vocabLimit are never sampled (the tokenizer's size). */
  vocabLimit: number;
}

export interface StepRequest {
  admit: AdmitRequest[];
  /** Sequences to drop before running (cancelled, past their deadline). */
  drop: number[];
  /** Image features the worker may forget once this step's admissions have used them. */
  evict: string[];
  /**
   * Decode runs to do in this call. 0 returns the admitted sequences' first tokens straight after
   * their prefill; more than one saves a thread round trip per token when nothing is waiting to
   * join; rows that finish stop taking part.
   */
  decodeSteps: number;
}

export type FinishReason = 'stop' | 'length';

export interface SequenceOutput {
  seqId: number;
  /** Tokens produced this step (a sequence admitted this step: its prefill's token, then one per decode run). */
  tokens: number[];
  finish?: FinishReason;
}

export interface StepResult {
  outputs: SequenceOutput[];
  /** Sequences admitted this step whose prefill ran, with its duration. */
  prefilled: number[];
  prefillMs: number;
  visionMs: number;
  decodeMs: number;
  /** Rows in the first decode run of this call (the running batch). */
  batchSize: number;
  /** Decode runs done in this call. */
  decodeSteps: number;
  prefillTokens: number;
  imagesEncoded: number;
  imagesFromCache: number;
  /** Admitted sequences whose prompt was not computed: in the prompt cache, or the same as another's in this step. */
  promptsFromCache: number;
  kvBytes: number;
}

export interface SerializedError {
  kind: EngineErrorKind;
  code: string;
  message: string;
}

export type ToWorker =
  | { type: 'step'; id: number; request: StepRequest }
  | { type: 'dispose'; id: number };

export type FromWorker =
  | { type: 'ready'; info: ModelInfo }
  | { type: 'init_error'; error: SerializedError }
  | { type: 'stepped'; id: number; result: StepResult }
  /** The step failed; the worker dropped every sequence it held. */
  | { type: 'step_error'; id: number; error: SerializedError; dropped: number[] }
  | { type: 'disposed'; id: number };
