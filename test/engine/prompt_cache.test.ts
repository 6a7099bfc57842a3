// The prompt cache (src/engine/runner/prompt_cache.ts): a prompt seen again, or several times in
// one step, is prefilled once and generates exactly what a computed prompt generates.
import { Engine, GenerateRequest } from '../../src/engine/engine';
import { KvBatch, KvLayout } from '../../src/engine/runner/kv_batch';
import { PromptCache, promptKey } from '../../src/engine/runner/prompt_cache';
import { StepResult } from '../../src/engine/runner/protocol';
import { DEFAULT_SAMPLING_PARAMS } from '../../src/engine/sampling/params';
import { Tensor } from '../../src/engine/onnx/ort';
import { noiseImage, testEngine } from '../helpers/service';

const LAYOUT: KvLayout = { numLayers: 1, kvHeads: 2, headDim: 3, type: 'float32' };

/** [B, kv, S, d] tensors whose values name their row, head, position and dimension. */
function present(batch: number, length: number): Tensor[] {
  return [0, 1].map((t) => {
    const data = new Float32Array(batch * LAYOUT.kvHeads * length * LAYOUT.headDim);
    for (let b = 0; b < batch; b++)
      for (let h = 0; h < LAYOUT.kvHeads; h++)
        for (let p = 0; p < length; p++)
          for (let d = 0; d < LAYOUT.headDim; d++) data[((b * LAYOUT.kvHeads + h) * length + p) * LAYOUT.headDim + d] = t * 10000 + b * 1000 + h * 100 + p * 10 + d;
    return { type: 'float32', data, dims: [batch, LAYOUT.kvHeads, length, LAYOUT.headDim] } as Tensor;
  });
}

const at = (t: Tensor, b: number, h: number, p: number, d: number) => (t.data as Float32Array)[((b * t.dims[1] + h) * t.dims[2] + p) * t.dims[3] + d];

describe('KvBatch rows', () => {
  test('rowOf drops a row\'s left padding and fromRows right-aligns rows of different lengths', () => {
    const prefill = present(2, 5); // row 0 padded by 2, row 1 by 0
    const short = KvBatch.rowOf(LAYOUT, prefill, 0, 2);
    const long = KvBatch.rowOf(LAYOUT, prefill, 1, 0);
    expect(short[0].dims).toEqual([1, 2, 3, 3]);
    expect(at(short[1], 0, 1, 0, 2)).toBe(10000 + 0 + 100 + 20 + 2); // position 2 of row 0
    const batch = KvBatch.fromRows(LAYOUT, [7, 8, 9], [short, long, short]);
    expect(batch.seqIds).toEqual([7, 8, 9]);
    expect(batch.pads).toEqual([2, 0, 2]);
    expect(batch.pastLength).toBe(5);
    expect(at(batch.past[0], 0, 1, 2, 1)).toBe(0 + 0 + 100 + 20 + 1);
    expect(at(batch.past[0], 1, 0, 4, 0)).toBe(1000 + 40);
    expect(at(batch.past[1], 2, 1, 4, 2)).toBe(10000 + 100 + 40 + 2);
    // The inputs are only read: the batch holds copies.
    (batch.past[0].data as Float32Array).fill(-1);
    expect(at(short[0], 0, 0, 0, 0)).toBe(20);
  });
});

describe('PromptCache', () => {
  const entry = (values: number) => ({ kv: [{ type: 'float32', data: new Float32Array(values), dims: [1, 1, values, 1] } as Tensor], logits: new Float32Array(4) });

  test('keeps the most recently used entries within its byte budget; 0 keeps nothing', () => {
    const cache = new PromptCache(3 * (40 + 16));
    cache.put('a', entry(10));
    cache.put('b', entry(10));
    cache.put('c', entry(10));
    expect(cache.get('a')).toBeDefined(); // a is now the most recent
    cache.put('d', entry(10));
    expect(cache.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((k) => cache.get(k) !== undefined)).toEqual([true, true, true]);
    expect(cache.bytes).toBe(3 * 56);
    const off = new PromptCache(0);
    off.put('a', entry(1));
    expect(off.size).toBe(0);
  });

  test('a prompt is the same when its ids and its images are', () => {
    const image = (key: string) => ({ key, grid: [1, 2, 2] as [number, number, number], tokens: 1, cache: true });
    expect(promptKey({ inputIds: [1, 2, 3], images: [image('x')] })).toBe(promptKey({ inputIds: [1, 2, 3], images: [image('x')] }));
    expect(promptKey({ inputIds: [1, 2, 3], images: [image('x')] })).not.toBe(promptKey({ inputIds: [1, 2, 3], images: [image('y')] }));
    expect(promptKey({ inputIds: [1, 2, 3], images: [] })).not.toBe(promptKey({ inputIds: [1, 23], images: [] }));
  });
});

describe('the prompt cache in the engine (models/tiny-random)', () => {
  let cached: Engine;
  let uncached: Engine;
  const steps: StepResult[] = [];
  beforeAll(() => {
    cached = testEngine({ promptCacheBytes: 8 << 20 });
    uncached = testEngine({ promptCacheBytes: 0 });
    cached.observe({ onStep: (_model, result) => steps.push(result) });
  });
  afterAll(() => Promise.all([cached.dispose(), uncached.dispose()]));

  const fromCache = () => steps.reduce((n, s) => n + s.promptsFromCache, 0);
  const request = (png: Buffer, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
    prompt: { template: 'r1', question: 'Which object is closer?' },
    images: [png],
    maxNewTokens: 12,
    ignoreEos: true,
    ...extra,
  });

  test('a prompt seen again starts from the cache and generates what a computed prompt generates', async () => {
    const png = await noiseImage(84, 56, 77);
    steps.length = 0;
    const first = await cached.generateText(request(png));
    expect(fromCache()).toBe(0);
    const again = await cached.generateText(request(png));
    expect(fromCache()).toBe(1);
    const computed = await uncached.generateText(request(png));
    expect(again.tokenIds).toEqual(first.tokenIds);
    expect(again.tokenIds).toEqual(computed.tokenIds);
    // Another picture with the same question is another prompt.
    steps.length = 0;
    await cached.generateText(request(await noiseImage(84, 56, 78)));
    expect(fromCache()).toBe(0);
  });

  test('seeded samples from a cached prompt equal those from a computed one', async () => {
    const png = await noiseImage(56, 56, 5);
    const sampled = (engine: Engine, seed: number) =>
      engine.generateText(request(png, { sampling: { ...DEFAULT_SAMPLING_PARAMS, temperature: 1.2, seed } }));
    await sampled(cached, 1); // now cached
    steps.length = 0;
    const [a, b] = [await sampled(cached, 2), await sampled(cached, 3)];
    expect(fromCache()).toBe(2);
    expect(a.tokenIds).toEqual((await sampled(uncached, 2)).tokenIds);
    expect(b.tokenIds).toEqual((await sampled(uncached, 3)).tokenIds);
    expect(a.tokenIds).not.toEqual(b.tokenIds);
  });

  test('a cached prompt whose picture the feature cache forgot still leaves its features for the next prompt', async () => {
    // A feature cache that holds one 56x56 picture's features (4 tokens x 64 floats): each new
    // picture evicts the last one.
    const engine = testEngine({ promptCacheBytes: 8 << 20, scheduler: { maxBatchSize: 8, maxWaiting: 32, maxPrefillTokens: 4096, featureCacheBytes: 4 * 64 * 4 } });
    try {
      const [x, y] = [await noiseImage(56, 56, 101), await noiseImage(56, 56, 102)];
      const ask = (png: Buffer, question: string) => engine.generateText({ prompt: { template: 'r1', question }, images: [png], maxNewTokens: 3 });
      await ask(x, 'first question');
      await ask(y, 'first question'); // x's features are evicted
      await ask(x, 'first question'); // a cached prompt: x is sent again and kept, not prefilled
      const other = await ask(x, 'second question'); // x's features are expected in the worker
      expect(other.tokenIds).toHaveLength(3);
    } finally {
      await engine.dispose();
    }
  });

  test('the same prompt admitted several times in one step is prefilled once, even with the cache off', async () => {
    const observed: StepResult[] = [];
    const stop = uncached.observe({ onStep: (_model, result) => observed.push(result) });
    try {
      const png = await noiseImage(56, 84, 9);
      const results = await Promise.all([1, 2, 3].map(() => uncached.generateText(request(png))));
      for (const r of results) expect(r.tokenIds).toEqual(results[0].tokenIds);
      const admitted = observed.reduce((n, s) => n + s.prefilled.length, 0);
      expect(admitted).toBe(3);
      // However the three were split over steps, every prompt after the first of a step came free.
      const computed = observed.reduce((n, s) => n + s.prefilled.length - s.promptsFromCache, 0);
      expect(computed).toBe(observed.filter((s) => s.prefilled.length).length);
    } finally {
      stop();
    }
  });
});
