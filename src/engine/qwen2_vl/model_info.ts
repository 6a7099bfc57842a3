// What a loaded model's graphs say about it, reported by the worker when it is ready
// (runner/protocol.ts) and read on both threads. Its own module so that runner/protocol.ts and
// qwen2_vl/modeling.ts need not import each other.
import type { TensorType } from '../onnx/ort';
import type { KvLayout } from '../runner/kv_batch';

export interface ModelInfo {
  layout: KvLayout;
  hiddenSize: number;
  /** Rows of the logits (the embedding size, which may exceed the tokenizer's). */
  logitsSize: number;
  hasNumLogitsToKeep: boolean;
  embedsType: TensorType;
}
