// The engine end to end on models/tiny-random: PyTorch and transformers.js parity, batching,
// sampling, stopping, caching, cancellation, back-pressure, deadlines.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, GenerateRequest } from '../../src/engine/engine';
import { EngineError } from '../../src/engine/errors';
import { StepResult } from '../../src/engine/runner/protocol';
import { DEFAULT_SAMPLING_PARAMS } from '../../src/engine/sampling/params';
import { loadVectors, REPO_ROOT, TinyLogitsVectors } from '../helpers/vectors';
import { copyTinyModel, noiseImage, testEngine, vectorPng } from '../helpers/service';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const T = require('@huggingface/transformers');

const v = loadVectors<TinyLogitsVectors>('tiny_logits.json');
const IMAGE_QUESTION = 'How many red objects are there?';
const chatWithImage = (text: string): GenerateRequest['prompt'] => ({
  template: 'chat',
  messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text }] }],
});

describe('engine on models/tiny-random', () => {
  let engine: Engine;
  const steps: StepResult[] = [];
  beforeAll(() => {
    engine = testEngine();
    engine.observe({ onStep: (_model, result) => steps.push(result) });
  });
  afterAll(() => engine.dispose());

  test('greedy tokens of an image prompt and a text prompt equal PyTorch greedy generate', async () => {
    const image = await engine.generateText({ prompt: chatWithImage(IMAGE_QUESTION), images: [vectorPng(v.image)], maxNewTokens: 8 });
    expect(image.tokenIds).toEqual(v.greedy_tokens_in_vocab[0]);
    expect(image.usage.imageTokens).toBe(4);
    const text = await engine.generateText({
      prompt: { template: 'chat', messages: [{ role: 'user', content: 'Which is closer, the cube or the sphere?' }] },
      images: [],
      maxNewTokens: 8,
    });
    expect(text.tokenIds).toEqual(v.greedy_tokens_in_vocab[1]);
  });

  test('greedy tokens equal PyTorch for resized, RGBA and grayscale images', async () => {
    for (const c of v.greedy_cases) {
      const result = await engine.generateText({ prompt: chatWithImage('Describe it.'), images: [vectorPng(c.image)], maxNewTokens: 10 });
      expect({ image: c.image, tokens: result.tokenIds }).toEqual({ image: c.image, tokens: c.greedy_tokens_in_vocab });
    }
  });

  // transformers.js resizes images with its own resampler, not PIL's bicubic, so its pixels (and,
  // for this random model with near-tied logits, its tokens) differ whenever an image is resized
  // (docs/preprocessing.md). Images whose sides are multiples of 28 are not resized.
  test('greedy tokens equal transformers.js on the same folder for images that need no resize', async () => {
    T.env.allowRemoteModels = false;
    T.env.localModelPath = join(REPO_ROOT, 'models');
    const processor = await T.AutoProcessor.from_pretrained('tiny-random');
    const model = await T.Qwen2VLForConditionalGeneration.from_pretrained('tiny-random', { dtype: 'fp32' });
    const config = JSON.parse(readFileSync(join(REPO_ROOT, 'models/tiny-random/config.json'), 'utf8'));
    const suppress = Array.from({ length: config.vocab_size - v.tokenizer_size }, (_, i) => v.tokenizer_size + i);
    try {
      for (const [w, h] of [[56, 56], [112, 56], [84, 168]]) {
        const png = await noiseImage(w, h, w + h);
        const ours = await engine.generateText({ prompt: chatWithImage('Describe it.'), images: [png], maxNewTokens: 10 });
        const text = processor.apply_chat_template([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe it.' }] }], { add_generation_prompt: true });
        const inputs = await processor(text, await T.RawImage.fromBlob(new Blob([png])));
        const out = await model.generate({ ...inputs, max_new_tokens: 10, do_sample: false, suppress_tokens: suppress });
        const theirs = Array.from(out.data as BigInt64Array, Number).slice(inputs.input_ids.dims[1]);
        expect(theirs.length).toBeGreaterThan(0);
        // transformers.js stops at the end tokens as we do; compare what both produced.
        expect(ours.tokenIds.slice(0, theirs.length)).toEqual(theirs);
      }
    } finally {
      await model.dispose();
    }
  });

  test('batched decoding gives the same tokens as one-at-a-time decoding', async () => {
    const requests: GenerateRequest[] = [];
    for (let i = 0; i < 6; i++) {
      const withImage = i % 2 === 0;
      requests.push({
        prompt: withImage ? { template: 'r1', question: `Question ${i}: ${'how many objects? '.repeat(i + 1)}` } : { template: 'direct', question: 'x'.repeat(3 + i * 7) },
        images: withImage ? [await noiseImage(56 + 28 * i, 84, i)] : [],
        maxNewTokens: 6 + i,
      });
    }
    const sequential = [];
    for (const r of requests) sequential.push((await engine.generateText({ ...r, images: r.images.map((b) => Buffer.from(b)) })).tokenIds);
    steps.length = 0;
    const batched = await Promise.all(requests.map((r) => engine.generateText(r)));
    expect(batched.map((r) => r.tokenIds)).toEqual(sequential);
    expect(Math.max(...steps.map((s) => s.batchSize))).toBeGreaterThan(1);
  });

  test('a request that arrives while another decodes joins the running batch', async () => {
    steps.length = 0;
    const long = engine.generate({ prompt: { template: 'raw', question: 'long one' }, images: [], maxNewTokens: 60 });
    await long.next(); // the long request is decoding
    const short = await engine.generateText({ prompt: { template: 'raw', question: 'short one' }, images: [], maxNewTokens: 3 });
    let longResult;
    for await (const event of long) if (event.type === 'done') longResult = event.result;
    expect(short.finishReason).toBe('length');
    expect(longResult?.finishReason).toBe('length');
    // The step that prefilled the short request decoded both.
    expect(steps.find((s) => s.prefilled.length === 1 && s.batchSize === 2)).toBeDefined();
  });

  test('a request into an idle model gets its first token from the prefill alone, then the rest decode', async () => {
    steps.length = 0;
    const result = await engine.generateText({ prompt: { template: 'raw', question: 'alone' }, images: [], maxNewTokens: 5, ignoreEos: true });
    expect(result.tokenIds).toHaveLength(5);
    const [first, ...rest] = steps;
    expect(first.prefilled).toHaveLength(1);
    expect(first.decodeSteps).toBe(0);
    expect(first.outputs.map((o) => o.tokens.length)).toEqual([1]);
    expect(rest.reduce((sum, s) => sum + s.decodeSteps, 0)).toBe(4);
  });

  test('seeded sampling is reproducible and the seed matters', async () => {
    const run = (seed: number) =>
      engine.generateText({ prompt: { template: 'raw', question: 'Tell me' }, images: [], maxNewTokens: 16, sampling: { ...DEFAULT_SAMPLING_PARAMS, temperature: 1.5, seed } });
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a.tokenIds).toEqual(b.tokenIds);
    expect(a.tokenIds).not.toEqual(c.tokenIds);
    for (const id of [...a.tokenIds, ...c.tokenIds]) expect(id).toBeLessThan(v.tokenizer_size);
  });

  test('repeated images reuse cached vision features', async () => {
    steps.length = 0;
    const png = await noiseImage(90, 60, 1234);
    await engine.generateText({ prompt: { template: 'r1', question: 'a' }, images: [png], maxNewTokens: 2 });
    await engine.generateText({ prompt: { template: 'r1', question: 'b' }, images: [png], maxNewTokens: 2 });
    expect(steps.reduce((n, s) => n + s.imagesEncoded, 0)).toBe(1);
    expect(steps.reduce((n, s) => n + s.imagesFromCache, 0)).toBe(1);
  });

  test('the r1 template parses think and answer with the training format rule', async () => {
    const result = await engine.generateText({ prompt: { template: 'r1', question: IMAGE_QUESTION }, images: [vectorPng('56x56')], maxNewTokens: 5 });
    expect(result.template).toBe('r1');
    // A random model writes no tags: the whole completion is the (unclosed) think block.
    expect(result.think).toBe(result.text.trim());
    expect(result.answer).toBeNull();
    expect(result.formatOk).toBe(false);
  });

  test('cancelling one request leaves the others running', async () => {
    // A long generation that ignores end tokens, aborted as soon as its first text streams out:
    // it cannot finish first however fast the machine is.
    const long = testEngine({ maxNewTokensCap: 2000 });
    try {
      const controller = new AbortController();
      const other = long.generateText({ prompt: { template: 'raw', question: 'keep me' }, images: [], maxNewTokens: 20 });
      const cancelled = (async () => {
        for await (const event of long.generate({
          prompt: { template: 'raw', question: 'cancel me' }, images: [], maxNewTokens: 2000, ignoreEos: true, signal: controller.signal,
        })) {
          if (event.type === 'delta') controller.abort();
        }
      })();
      await expect(cancelled).rejects.toMatchObject({ kind: 'cancelled' });
      await expect(other).resolves.toMatchObject({ finishReason: 'length' });
    } finally {
      await long.dispose();
    }
  });

  test('a request past its deadline fails with a timeout', async () => {
    const long = testEngine({ maxNewTokensCap: 2000 });
    try {
      await expect(
        long.generateText({ prompt: { template: 'raw', question: 'slow' }, images: [], maxNewTokens: 2000, ignoreEos: true, timeoutMs: 5 }),
      ).rejects.toMatchObject({ kind: 'timeout', code: 'deadline_exceeded' });
    } finally {
      await long.dispose();
    }
  });

  test('bad inputs are refused before reaching the model', async () => {
    await expect(engine.generateText({ prompt: { template: 'raw', question: 'x' }, images: [], maxNewTokens: 0 })).rejects.toMatchObject({ kind: 'invalid_input' });
    await expect(engine.generateText({ model: 'nope', prompt: { template: 'raw', question: 'x' }, images: [] })).rejects.toMatchObject({ kind: 'not_found' });
    await expect(
      engine.generateText({ prompt: { template: 'r1', question: 'x' }, images: [Buffer.from('not an image')] }),
    ).rejects.toBeInstanceOf(EngineError);
  });
});

describe('loading a model', () => {
  test('load opens the sessions of a model without generating, once; warmup loads the default model so readiness follows', async () => {
    const engine = testEngine();
    const generated: string[] = [];
    engine.observe({ onStep: (model) => generated.push(model), onRequestDone: (model) => generated.push(model) });
    try {
      expect(engine.isReady()).toBe(false);
      expect(await engine.load('tiny-random')).toEqual({ name: 'tiny-random', dir: join(REPO_ROOT, 'models', 'tiny-random'), loaded: true });
      const [loaded] = engine.registry.loadedModels();
      expect(loaded.name).toBe('tiny-random');
      await engine.load('tiny-random');
      expect(engine.registry.loadedModels()).toEqual([loaded]);
      expect(generated).toEqual([]);
      expect(engine.isReady()).toBe(true);
      // The loaded sessions serve the next request.
      const result = await engine.generateText({ prompt: { template: 'raw', question: 'Hello' }, images: [], maxNewTokens: 2 });
      expect(result.usage.completionTokens).toBe(2);
      expect(engine.registry.loadedModels()).toEqual([loaded]);
    } finally {
      await engine.dispose();
    }
    const warm = testEngine();
    const warmSteps: string[] = [];
    warm.observe({ onStep: (model) => warmSteps.push(model), onRequestDone: (model) => warmSteps.push(model) });
    try {
      await warm.warmup();
      expect(warm.isReady()).toBe(true);
      expect(warmSteps).toEqual([]);
    } finally {
      await warm.dispose();
    }
  });

  test('an unknown name is model_not_found, and a draining engine loads nothing', async () => {
    const engine = testEngine();
    try {
      await expect(engine.load('no-such-model')).rejects.toMatchObject({ kind: 'not_found', code: 'model_not_found' });
      await engine.drain();
      await expect(engine.load('tiny-random')).rejects.toMatchObject({ kind: 'overloaded', code: 'shutting_down' });
      expect(engine.registry.loadedModels()).toEqual([]);
    } finally {
      await engine.dispose();
    }
  });
});

describe('the one-image rule of question templates', () => {
  test('more than one image with a question template is too_many_images before the model is even loaded; chat takes several', async () => {
    const engine = testEngine();
    try {
      const png = vectorPng(v.image);
      for (const template of ['r1', 'instruct', 'direct', 'raw'] as const) {
        const request: GenerateRequest = { prompt: { template, question: 'Which is left?' }, images: [png, png] };
        const expected = { kind: 'invalid_input', code: 'too_many_images', message: `template ${template} takes at most one image` };
        await expect(engine.generateText(request)).rejects.toMatchObject(expected);
        await expect(engine.generate(request).next()).rejects.toMatchObject(expected);
      }
      expect(engine.registry.loadedModels()).toEqual([]);
      const chat: GenerateRequest['prompt'] = { template: 'chat', messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Same?' }] }] };
      const result = await engine.generateText({ prompt: chat, images: [png, png], maxNewTokens: 1 });
      expect(result.usage.imageTokens).toBe(8);
    } finally {
      await engine.dispose();
    }
  });
});

describe('engine back-pressure', () => {
  test('a full queue refuses requests with a retry hint instead of hanging', async () => {
    const engine = testEngine({ scheduler: { maxBatchSize: 1, maxWaiting: 1, maxPrefillTokens: 4096, featureCacheBytes: 0 } });
    try {
      const request = (): GenerateRequest => ({ prompt: { template: 'raw', question: 'busy' }, images: [], maxNewTokens: 30 });
      await engine.generateText({ ...request(), maxNewTokens: 1 }); // load the model first
      const results = await Promise.allSettled([1, 2, 3, 4].map(() => engine.generateText(request())));
      const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as EngineError);
      expect(refused.length).toBeGreaterThan(0);
      for (const error of refused) {
        expect(error.kind).toBe('overloaded');
        expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      }
      expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThan(0);
    } finally {
      await engine.dispose();
    }
  });
});

describe('stopping', () => {
  test('generation stops at any end id of the model unless ignore_eos asks for the full length', async () => {
    const copy = copyTinyModel('stops-early');
    // Make the first greedy token of this prompt (611) an end token of the model.
    const path = join(copy.dir, 'generation_config.json');
    const generation = JSON.parse(readFileSync(path, 'utf8'));
    writeFileSync(path, JSON.stringify({ ...generation, eos_token_id: [...generation.eos_token_id, 611] }));
    const engine = testEngine({ modelRoots: [copy.root], defaultModel: 'stops-early' });
    try {
      const request: GenerateRequest = { prompt: chatWithImage(IMAGE_QUESTION), images: [vectorPng(v.image)], maxNewTokens: 8 };
      const stopped = await engine.generateText(request);
      expect(stopped).toMatchObject({ finishReason: 'stop', tokenIds: [611], text: '' });
      const full = await engine.generateText({ ...request, ignoreEos: true });
      expect(full.finishReason).toBe('length');
      expect(full.tokenIds).toEqual(v.greedy_tokens_in_vocab[0]);
    } finally {
      await engine.dispose();
      copy.cleanup();
    }
  });
});
