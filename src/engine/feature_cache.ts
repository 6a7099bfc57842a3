// Which images' vision features the model worker keeps, decided on the main thread (LRU within a
// byte budget). The worker stores the features; this policy tells it what to forget, so both sides
// always agree on what is cached and the scheduler can skip sending pixels for a cached image.
import { createHash } from 'node:crypto';

export function imageCacheKey(bytes: Uint8Array, settings: Record<string, number>): string {
  const hash = createHash('sha256').update(bytes);
  for (const [name, value] of Object.entries(settings).sort()) hash.update(`|${name}=${value}`);
  return hash.digest('hex');
}

export class FeatureCachePolicy {
  private readonly entries = new Map<string, number>(); // key -> bytes, in recency order
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {}

  /** Whether the worker holds `key`; a hit refreshes its recency. */
  lookup(key: string): boolean {
    const size = this.entries.get(key);
    if (size === undefined) {
      this.misses += 1;
      return false;
    }
    this.entries.delete(key);
    this.entries.set(key, size);
    this.hits += 1;
    return true;
  }

  /**
   * Record that the worker will keep `key` (`size` bytes). Returns the keys to evict to stay in
   * budget, or null when the entry alone exceeds the budget (then it is not kept at all).
   */
  admit(key: string, size: number): string[] | null {
    if (size > this.maxBytes) return null;
    const evicted: string[] = [];
    for (const [old, oldSize] of this.entries) {
      if (this.bytes + size <= this.maxBytes) break;
      this.entries.delete(old);
      this.bytes -= oldSize;
      evicted.push(old);
    }
    this.entries.set(key, size);
    this.bytes += size;
    return evicted;
  }

  get size(): number {
    return this.entries.size;
  }

  get usedBytes(): number {
    return this.bytes;
  }
}
