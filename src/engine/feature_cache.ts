// Which images' vision features the model worker keeps, decided on the main thread (LRU within a
// byte budget). The worker stores the features; this policy tells it what to forget, so both sides
// always agree on what is cached and the scheduler can skip sending pixels for a cached image.
import { createHash } from 'node:crypto';
import { ByteLru } from './lru';

export function imageCacheKey(bytes: Uint8Array, settings: Record<string, number>): string {
  const hash = createHash('sha256').update(bytes);
  for (const [name, value] of Object.entries(settings).sort()) hash.update(`|${name}=${value}`);
  return hash.digest('hex');
}

export class FeatureCachePolicy {
  private readonly entries: ByteLru<true>;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {
    this.entries = new ByteLru(maxBytes);
  }

  /** Whether the worker holds `key`; a hit refreshes its recency. */
  lookup(key: string): boolean {
    const held = this.entries.get(key) !== undefined;
    if (held) this.hits += 1;
    else this.misses += 1;
    return held;
  }

  /**
   * Record that the worker will keep `key` (`size` bytes). Returns the keys to evict to stay in
   * budget, or null when the entry alone exceeds the budget (then it is not kept at all).
   */
  admit(key: string, size: number): string[] | null {
    return this.entries.set(key, true, size);
  }

  get size(): number {
    return this.entries.size;
  }

  get usedBytes(): number {
    return this.entries.bytes;
  }
}
