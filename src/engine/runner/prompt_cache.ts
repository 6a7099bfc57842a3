// The prompt cache of the model worker: the KV cache and first-token logits of recently prefilled
// prompts, so that a prompt seen again is not prefilled again. A prompt is the same when its ids
// and its images (content and preprocessing, the feature-cache key) are: then its positions, its
// KV cache and its logits are too. The cases that repeat a prompt: several samples of one
// evaluation item or of one GRPO group, retries, clients that send the same request.
//
// Exact prompts only, no shared prefixes. Least recently used entries go first once the byte budget
// is exceeded; a budget of 0 keeps nothing. Entries are never changed after they are stored: the KV
// batch copies rows out of them (KvBatch.fromRows) and never writes into its inputs.
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

function entryBytes(entry: PromptEntry): number {
  return entry.logits.byteLength + entry.kv.reduce((sum, t) => sum + t.data.byteLength, 0);
}

export class PromptCache {
  private readonly entries = new Map<string, { entry: PromptEntry; bytes: number }>(); // recency order
  private used = 0;

  constructor(readonly maxBytes: number) {}

  /** The entry of `key`, refreshed as most recently used; undefined when absent. */
  get(key: string): PromptEntry | undefined {
    const held = this.entries.get(key);
    if (!held) return undefined;
    this.entries.delete(key);
    this.entries.set(key, held);
    return held.entry;
  }

  /** Keep `entry` under `key`, evicting the least recently used ones to stay within budget. */
  set(key: string, entry: PromptEntry): void {
    const bytes = entryBytes(entry);
    if (bytes > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.used -= old.bytes;
    }
    for (const [oldKey, held] of this.entries) {
      if (this.used + bytes <= this.maxBytes) break;
      this.entries.delete(oldKey);
      this.used -= held.bytes;
    }
    this.entries.set(key, { entry, bytes });
    this.used += bytes;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.used;
  }
}
