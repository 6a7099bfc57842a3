// onnxruntime-node runs the exported tiny model and reproduces the PyTorch reference logits
// (test/vectors/tiny_logits.json): a left-padded batch with one image row and one text-only row,
// prefill, then three decode steps through the KV cache.
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadVectors, maxAbsDiff, TINY_MODEL_DIR, TinyLogitsVectors } from '../helpers/vectors';

const v = loadVectors<TinyLogitsVectors>('tiny_logits.json');
const int64 = (data: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(data.map(BigInt)), dims);
const float32 = (data: Float32Array | number[], dims: number[]) => new ort.Tensor('float32', Float32Array.from(data), dims);

describe('exported tiny model on onnxruntime-node', () => {
  let embed: ort.InferenceSession;
  let vision: ort.InferenceSession;
  let decoder: ort.InferenceSession;

  beforeAll(async () => {
    const open = (name: string) => ort.InferenceSession.create(join(TINY_MODEL_DIR, 'onnx', `${name}.onnx`));
    [embed, vision, decoder] = await Promise.all([open('embed_tokens'), open('vision_encoder'), open('decoder_model_merged')]);
  });
  afterAll(async () => Promise.all([embed?.release(), vision?.release(), decoder?.release()]));

  test('graphs expose the onnx-community input and output names', () => {
    expect(embed.inputNames).toEqual(['input_ids']);
    expect(vision.inputNames).toEqual(['pixel_values', 'grid_thw']);
    expect(vision.outputNames).toEqual(['image_features']);
    expect(decoder.inputNames.slice(0, 4)).toEqual(['inputs_embeds', 'attention_mask', 'position_ids', 'num_logits_to_keep']);
    expect(decoder.inputNames).toContain('past_key_values.0.key');
    expect(decoder.outputNames[0]).toBe('logits');
    expect(decoder.outputNames).toContain('present.0.value');
  });

  test('prefill and KV-cache decode reproduce the PyTorch logits', async () => {
    const batch = v.input_ids.length;
    const seq = v.input_ids[0].length;
    const { inputs_embeds } = await embed.run({ input_ids: int64(v.input_ids.flat(), [batch, seq]) });
    const hidden = inputs_embeds.dims[2];
    const embeds = inputs_embeds.data as Float32Array;

    const patches = v.pixel_values.length;
    const { image_features } = await vision.run({
      pixel_values: float32(v.pixel_values.flat(), [patches, v.pixel_values[0].length]),
      grid_thw: int64(v.image_grid_thw.flat(), [v.image_grid_thw.length, 3]),
    });
    // Splice the image features into the <|image_pad|> positions, in order.
    const imageTokenId = JSON.parse(readFileSync(join(TINY_MODEL_DIR, 'config.json'), 'utf8')).image_token_id;
    const features = image_features.data as Float32Array;
    let next = 0;
    v.input_ids.flat().forEach((id, i) => {
      if (id !== imageTokenId) return;
      embeds.set(features.subarray(next * hidden, (next + 1) * hidden), i * hidden);
      next += 1;
    });
    expect(next * hidden).toBe(features.length);

    const layers = decoder.inputNames.filter((n) => n.endsWith('.key')).length;
    const meta = decoder.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
    const [kvHeads, headDim] = meta && meta.isTensor ? (meta.shape.slice(1).filter((d) => typeof d === 'number') as number[]) : [0, 0];
    let past: Record<string, ort.Tensor> = {};
    for (let i = 0; i < layers; i++) {
      for (const kv of ['key', 'value']) past[`past_key_values.${i}.${kv}`] = float32([], [batch, kvHeads, 0, headDim]);
    }
    let mask = v.attention_mask.flat();
    let maskLength = seq;
    const run = async (embedsIn: ort.Tensor, positions: number[], keep: number) => {
      const out = await decoder.run({
        inputs_embeds: embedsIn,
        attention_mask: int64(mask, [batch, maskLength]),
        position_ids: int64(positions, [3, batch, positions.length / (3 * batch)]),
        num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.from([BigInt(keep)]), []),
        ...past,
      });
      past = {};
      for (const name of decoder.outputNames.filter((n) => n.startsWith('present.'))) {
        past[name.replace('present.', 'past_key_values.')] = out[name];
      }
      return out.logits;
    };

    const prefill = await run(float32(embeds, [batch, seq, hidden]), v.position_ids.flat(2), 1);
    expect(prefill.dims).toEqual([batch, 1, v.prefill_last_logits[0].length]);
    expect(maxAbsDiff(prefill.data as Float32Array, v.prefill_last_logits.flat())).toBeLessThan(1e-4);

    // Decode: each row's next position follows its largest prompt position (padding holds 0).
    const nextPos = v.position_ids[0].map((_, b) => Math.max(...[0, 1, 2].flatMap((axis) => v.position_ids[axis][b])) + 1);
    for (let step = 0; step < v.forced_tokens[0].length; step++) {
      const tokens = v.forced_tokens.map((row) => row[step]);
      const { inputs_embeds: stepEmbeds } = await embed.run({ input_ids: int64(tokens, [batch, 1]) });
      mask = v.attention_mask.flatMap((_row, b) => [...mask.slice(b * maskLength, (b + 1) * maskLength), 1]);
      maskLength += 1;
      const positions = [0, 1, 2].flatMap(() => nextPos.map((p) => p + step));
      const logits = await run(stepEmbeds, positions, 1);
      expect(maxAbsDiff(logits.data as Float32Array, v.decode_logits[step].flat())).toBeLessThan(1e-4);
    }
  });
});
