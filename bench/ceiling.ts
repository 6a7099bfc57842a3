// The ceiling of bench/generation.ts: the same model folder driven by the tightest loop that
// onnxruntime-node allows on this machine, so each of our rows reads as a fraction of what the
// runtime can do. One thread (this one), the prompt tokenized and its image preprocessed
// beforehand, and per generated token exactly one decoder run:
//   - token embeddings gathered from a table read once from embed_tokens (no graph call per token;
//     for a vocabulary too large to tabulate, the embed_tokens graph runs per token);
//   - every input allocated once (positions and mask are views of preallocated buffers);
//   - the outputs preallocated and written in place by onnxruntime: the logits row, and each
//     layer's present key/value in one of two ping-pong buffers, the other holding the past
//     (or allocated by onnxruntime per run, where that is faster);
//   - greedy argmax in a plain loop.
// Time to first token is the vision encoder, the prompt's embeddings and the prefill run.
//
// `openCeiling(dir, dtype, threads, question)` opens the loop; each `run` is one generation in a
// given shape, so bench/generation.ts can interleave the loop's rounds with our engine's and
// transformers.js's (the machine's speed drifts within minutes). The ceiling is the faster of
// TIGHTEST and TIGHTEST with runtime-allocated outputs (which one wins depends on the model); the
// other shapes add back one thing our engine does at a time (bench/generation.ts --ladder).
import * as ort from 'onnxruntime-node';
import { Dtype, readModelFolder } from '../src/engine/model_folder';
import { Tokenizer } from '../src/engine/tokenizer';
import { imageProcessorConfig, preprocessImage } from '../src/engine/qwen2_vl/image_processing';
import { promptInputs } from '../src/engine/qwen2_vl/prompt_inputs';
import { fromFloat16, sessionOptions, toFloat16 } from '../src/engine/onnx/ort';
import { Sampler } from '../src/engine/sampling/sampler';
import { DEFAULT_SAMPLING_PARAMS } from '../src/engine/sampling/params';
import { median } from './common';

/** Largest embedding table the loop keeps in memory (a 2B model's is about 0.9 GB in float32). */
const MAX_TABLE_BYTES = 256 * 2 ** 20;

/** The decoder's name for KV tensor `i` (layer i >> 1, key then value): `past_key_values.L.key`, `present.L.value`, ... */
const kvName = (prefix: 'past_key_values' | 'present', i: number) => `${prefix}.${i >> 1}.${i & 1 ? 'value' : 'key'}`;

/** What one loop variant keeps tight; each `false` is one thing our engine does instead. */
export interface LoopShape {
  /** Embeddings from the table (else the embed_tokens graph per token). */
  table: boolean;
  /** Outputs written into preallocated buffers (else onnxruntime allocates them per run). */
  preallocated: boolean;
  /** Plain argmax (else the engine's Sampler in greedy mode, with its history). */
  argmax: boolean;
}

export const TIGHTEST: LoopShape = { table: true, preallocated: true, argmax: true };

export interface CeilingLoop {
  /** One generation of `tokens` tokens: ms to the first token and ms for the rest. */
  run(png: Buffer, tokens: number, shape: LoopShape): Promise<{ firstMs: number; restMs: number }>;
  /** Prompt tokens of the benchmark's request with this picture. */
  promptLength(png: Buffer): Promise<number>;
  /** Milliseconds of one decoder run over `batch` rows with `past` positions each (median of `runs`). */
  batchRun(batch: number, past: number, runs: number): Promise<number>;
  dispose(): Promise<void>;
}

export async function openCeiling(dir: string, dtype: Dtype, threads: number, question: string): Promise<CeilingLoop> {
  const folder = readModelFolder(dir, { dtype });
  const tokenizer = await Tokenizer.fromModelDir(dir);
  const imageConfig = imageProcessorConfig(folder.preprocessor, {});
  // The engine's session options: only the decoder's threads spin-wait between runs, the other
  // sessions' idle threads would spin beside the decoder's (each session has its own pool).
  const quiet = sessionOptions({ threads, spin: false });
  const embedSession = await ort.InferenceSession.create(folder.graphFiles.embed_tokens, quiet);
  const visionSession = await ort.InferenceSession.create(folder.graphFiles.vision_encoder, quiet);
  const decoder = await ort.InferenceSession.create(folder.graphFiles.decoder_model_merged, sessionOptions({ threads }));
  const { numLayers, numKvHeads: kv, headDim: d, hiddenSize: hidden } = folder.text;
  const meta = (session: ort.InferenceSession, name: string) =>
    session.inputMetadata.find((m) => m.name === name) as ort.InferenceSession.ValueMetadata & { type: string };
  const kvType = meta(decoder, 'past_key_values.0.key').type as 'float32' | 'float16';
  const embedsType = meta(decoder, 'inputs_embeds').type as 'float32' | 'float16';
  const pixelType = meta(visionSession, 'pixel_values').type as 'float32' | 'float16';
  const hasKeep = decoder.inputNames.includes('num_logits_to_keep');
  const vocab = tokenizer.size;

  const embedIds = async (ids: number[]): Promise<Float32Array> => {
    const out = await embedSession.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    const t = out.inputs_embeds;
    return t.type === 'float16' ? fromFloat16(t.data as Uint16Array) : (t.data as Float32Array);
  };
  const table = vocab * hidden * 4 <= MAX_TABLE_BYTES ? await embedIds(Array.from({ length: vocab }, (_, i) => i)) : null;

  const maxLength = 4096 + 1024;
  const kvArray = (n: number) => (kvType === 'float16' ? new Uint16Array(n) : new Float32Array(n));
  // Two buffers per key/value of each layer: one holds the past, the other receives the present.
  // Allocated by the first run that writes into them (batch runs and other shapes do not).
  let buffers: (Float32Array | Uint16Array)[][] | null = null;
  const mask = new BigInt64Array(maxLength).fill(1n);
  const positions = new BigInt64Array(3);
  const keep = new ort.Tensor('int64', BigInt64Array.of(1n), []);
  const embeds = new Float32Array(hidden);

  const feedsFor = (embedsData: Float32Array, seq: number, past: ort.Tensor[], maskLength: number, positionData: BigInt64Array) => {
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: embedsType === 'float16'
        ? new ort.Tensor('float16', toFloat16(embedsData), [1, seq, hidden])
        : new ort.Tensor('float32', embedsData, [1, seq, hidden]),
      attention_mask: new ort.Tensor('int64', mask.subarray(0, maskLength), [1, maskLength]),
      position_ids: new ort.Tensor('int64', positionData, [3, 1, seq]),
    };
    if (hasKeep) feeds.num_logits_to_keep = keep;
    for (let i = 0; i < 2 * numLayers; i++) feeds[kvName('past_key_values', i)] = past[i];
    return feeds;
  };
  const argmax = (logits: Float32Array, offset: number) => {
    let best = offset;
    for (let i = offset + 1; i < offset + vocab; i++) if (logits[i] > logits[best]) best = i;
    return best - offset;
  };

  const prepare = async (png: Buffer, tokens: number) => {
    const processed = await preprocessImage(png, imageConfig, { maxInputPixels: 1 << 30 });
    const text = tokenizer.applyChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }], { addGenerationPrompt: true });
    const prompt = promptInputs(text, (t) => tokenizer.encode(t), [{ grid: processed.gridThw, tokens: processed.numImageTokens }], folder, maxLength - tokens);
    return { processed, prompt };
  };

  return {
    async promptLength(png) {
      return (await prepare(png, 1)).prompt.inputIds.length;
    },
    async batchRun(batch, pastLength, runs) {
      const embedsData = new Float32Array(batch * hidden).fill(0.01);
      const feeds: Record<string, ort.Tensor> = {
        inputs_embeds: embedsType === 'float16' ? new ort.Tensor('float16', toFloat16(embedsData), [batch, 1, hidden]) : new ort.Tensor('float32', embedsData, [batch, 1, hidden]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * (pastLength + 1)).fill(1n), [batch, pastLength + 1]),
        position_ids: new ort.Tensor('int64', new BigInt64Array(3 * batch).fill(BigInt(pastLength)), [3, batch, 1]),
      };
      if (hasKeep) feeds.num_logits_to_keep = keep;
      for (let i = 0; i < 2 * numLayers; i++) {
        const data = kvArray(batch * kv * pastLength * d);
        feeds[kvName('past_key_values', i)] = new ort.Tensor(kvType, data, [batch, kv, pastLength, d]);
      }
      const times: number[] = [];
      for (let r = 0; r < runs + 3; r++) {
        const t = performance.now();
        await decoder.run(feeds);
        if (r >= 3) times.push(performance.now() - t);
      }
      return median(times);
    },
    async run(png, tokens, shape) {
      const { processed, prompt } = await prepare(png, tokens);
      const sampler = shape.argmax ? null : new Sampler(DEFAULT_SAMPLING_PARAMS);
      const history = [...prompt.inputIds];
      const started = performance.now();

      // Prefill: vision features spliced over the image tokens of the prompt's embeddings.
      const pixels = processed.pixelValues;
      const patches = processed.gridThw[0] * processed.gridThw[1] * processed.gridThw[2];
      const vision = await visionSession.run({
        pixel_values: pixelType === 'float16' ? new ort.Tensor('float16', toFloat16(pixels), [patches, pixels.length / patches]) : new ort.Tensor('float32', pixels, [patches, pixels.length / patches]),
        grid_thw: new ort.Tensor('int64', BigInt64Array.from(processed.gridThw.map(BigInt)), [1, 3]),
      });
      const features = vision.image_features.type === 'float16' ? fromFloat16(vision.image_features.data as Uint16Array) : (vision.image_features.data as Float32Array);
      const n = prompt.inputIds.length;
      let promptEmbeds: Float32Array;
      if (table) {
        promptEmbeds = new Float32Array(n * hidden);
        prompt.inputIds.forEach((id, i) => promptEmbeds.set(table.subarray(id * hidden, (id + 1) * hidden), i * hidden));
      } else {
        promptEmbeds = await embedIds(prompt.inputIds);
      }
      let slot = 0;
      prompt.inputIds.forEach((id, i) => {
        if (id === folder.imageTokenId) promptEmbeds.set(features.subarray(slot * hidden, ++slot * hidden), i * hidden);
      });
      const empty = Array.from({ length: 2 * numLayers }, () => new ort.Tensor(kvType, kvArray(0), [1, kv, 0, d]));
      const prefillPositions = BigInt64Array.from(prompt.positionIds.map(BigInt));
      const prefill = await decoder.run(feedsFor(promptEmbeds, n, empty, n, prefillPositions));
      const logitsSize = prefill.logits.dims[2];
      const logitsOut = new ort.Tensor('float32', new Float32Array(logitsSize), [1, 1, logitsSize]);
      let past: ort.Tensor[] = Array.from({ length: 2 * numLayers }, (_, i) => prefill[kvName('present', i)]);
      let logits = prefill.logits.data as Float32Array;
      const pick = (values: Float32Array, offset: number) => {
        const token = sampler ? sampler.next(values, offset, vocab, history) : argmax(values, offset);
        history.push(token);
        return token;
      };
      let token = pick(logits, (prefill.logits.dims[1] - 1) * logitsSize);
      const firstMs = performance.now() - started;

      const decodeStarted = performance.now();
      let length = n;
      let side = 0;
      for (let step = 1; step < tokens; step++) {
        if (table) embeds.set(table.subarray(token * hidden, (token + 1) * hidden));
        else embeds.set(await embedIds([token]));
        positions.fill(BigInt(prompt.nextPosition + step - 1));
        const feeds = feedsFor(embeds, 1, past, length + 1, positions);
        let out: ort.InferenceSession.OnnxValueMapType;
        if (shape.preallocated) {
          buffers ??= [0, 1].map(() => Array.from({ length: 2 * numLayers }, () => kvArray(kv * maxLength * d)));
          const into = buffers[side];
          const fetches: Record<string, ort.Tensor | null> = { logits: logitsOut };
          const next: ort.Tensor[] = [];
          for (let i = 0; i < 2 * numLayers; i++) {
            const t = new ort.Tensor(kvType, into[i].subarray(0, kv * (length + 1) * d), [1, kv, length + 1, d]);
            fetches[kvName('present', i)] = t;
            next.push(t);
          }
          await decoder.run(feeds, fetches);
          out = { logits: logitsOut };
          past = next;
          side = 1 - side;
        } else {
          out = await decoder.run(feeds);
          past = Array.from({ length: 2 * numLayers }, (_, i) => out[kvName('present', i)] as ort.Tensor);
        }
        logits = out.logits.data as Float32Array;
        token = pick(logits, 0);
        length += 1;
      }
      return { firstMs, restMs: performance.now() - decodeStarted };
    },
    async dispose() {
      await Promise.all([embedSession.release(), visionSession.release(), decoder.release()]);
    },
  };
}

/**
 * Milliseconds of one decoder run over `batch` rows whose past is the prompt of `png` plus `extra`
 * positions (median of 30 runs), for every extra and batch size: result[extra][batch].
 * No prefill, no sampling.
 */
export async function batchedRunMs(loop: CeilingLoop, png: Buffer, batches: number[], extras: number[]): Promise<Record<number, Record<number, number>>> {
  const prompt = await loop.promptLength(png);
  const ms: Record<number, Record<number, number>> = {};
  for (const extra of extras) {
    ms[extra] = {};
    for (const batch of batches) ms[extra][batch] = await loop.batchRun(batch, prompt + extra, 30);
  }
  return ms;
}

/**
 * The runtime's decode rate for each batch size: `batch` rows / the time of one decoder run over
 * `batch` rows whose past is the prompt of `png` plus half of `tokens` (the mean over a
 * generation). No prefill, no sampling: an upper bound for many clients decoding together.
 */
export async function batchedCeiling(loop: CeilingLoop, png: Buffer, tokens: number, batches: number[]): Promise<Record<number, number>> {
  const extra = Math.floor(tokens / 2);
  const ms = (await batchedRunMs(loop, png, batches, [extra]))[extra];
  return Object.fromEntries(batches.map((batch) => [batch, batch / (ms[batch] / 1000)]));
}
