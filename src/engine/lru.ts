// A map that keeps its most recently used entries within a byte budget: the engine's caches of
// derived data (prefilled prompts in the worker, preprocessed images on the main thread) and the
// scheduler's record of which image features the worker keeps (feature_cache.ts).
export class ByteLru<V> {
  private readonly entries = new Map<string, { value: V; bytes: number }>(); // recency order
  private used = 0;

  constructor(readonly maxBytes: number) {}

  /** The value of `key`, refreshed as most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const held = this.entries.get(key);
    if (!held) return undefined;
    this.entries.delete(key);
    this.entries.set(key, held);
    return held.value;
  }

  /**
   * Keep `value` (`bytes` large) under `key`, evicting the least recently used entries to stay
   * within budget. Returns the evicted keys, or null when the value alone exceeds the budget (then
   * it is not kept at all).
   */
  set(key: string, value: V, bytes: number): string[] | null {
    if (bytes > this.maxBytes) return null;
    const evicted: string[] = [];
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.used -= old.bytes;
    }
    for (const [oldKey, held] of this.entries) {
      if (this.used + bytes <= this.maxBytes) break;
      this.entries.delete(oldKey);
      this.used -= held.bytes;
      evicted.push(oldKey);
    }
    this.entries.set(key, { value, bytes });
    this.used += bytes;
    return evicted;
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
