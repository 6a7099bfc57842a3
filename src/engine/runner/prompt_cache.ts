// The prompt cache of the model worker: the KV cache and first-token logits of recently prefilled
// prompts, so that a prompt seen again is not prefilled again. A prompt is the same when its ids
// and its images (content and preprocessing, the feature-cache key) are: then its positions, its
// KV cache and its logits are too. The cases that repeat a prompt: several samples of one
// evaluation item or of one GRPO group, retries, clients that send the same request.
//
// Exact prompts only, no shared prefixes. Least recently used entries go first once the byte budget
// is exceeded; a budget of 0 keeps nothing. Entries are never changed after they are stored: the KV
// batch copies rows out of them (KvBatch.fromRows) and never writes into its inputs.
import { ByteLru } from '../lru';
import type { Tensor } from '../onnx/ort';
import type { AdmitRequest } from './protocol';

export interface PromptEntry {
  /** Per layer key then value, each [1, kv_heads, promptLength, head_dim], unpadded. */
  kv: Tensor[];
  /** Logits of the prompt's last position (the first generated token's distribution). */
  logits: Float32Array;
}

/** The cache key of an admitted prompt: its ids and its images' keys. */
export function promptKey(admit: Pick<AdmitRequest, 'inputIds' | 'images'>): string {
  return `${admit.inputIds.join(',')}|${admit.images.map((i) => i.key).join('|')}`;
}

/** Bytes an entry holds: its KV tensors and its logits. */
export function promptEntryBytes(entry: PromptEntry): number {
  return entry.logits.byteLength + entry.kv.reduce((sum, t) => sum + t.data.byteLength, 0);
}

/** Prefilled prompts by promptKey, least recently used first out (lru.ts). */
export class PromptCache extends ByteLru<PromptEntry> {
  /** Keep `entry` under `key`, within the byte budget. */
  put(key: string, entry: PromptEntry): void {
    this.set(key, entry, promptEntryBytes(entry));
  }
}
