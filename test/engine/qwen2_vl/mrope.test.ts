// M-RoPE position ids against transformers' Qwen2VLModel.get_rope_index (test/vectors/mrope.json,
// written by `python -m trainer.vectors`) and the worked example of docs/qwen2-vl.md, "M-RoPE position ids".
import {
  decodePosition,
  decodePositionIds,
  expandImageTokens,
  imageTokenCount,
  MropeConfig,
  nextPosition,
  ropeIndex,
  ropeIndexFlat,
  toBigInt64,
} from '../../../src/engine/qwen2_vl/mrope';
import { loadVectors, TinyLogitsVectors } from '../../helpers/vectors';
import { expectEngineError } from '../../helpers/errors';

interface MropeCase {
  name: string;
  input_ids: number[][];
  mm_token_type_ids: number[][];
  attention_mask: number[][];
  image_grid_thw: number[][];
  position_ids: number[][][];
  rope_deltas: number[];
}

interface MropeVectors {
  image_token_id: number;
  vision_start_token_id: number;
  vision_end_token_id: number;
  spatial_merge_size: number;
  cases: MropeCase[];
}

const v = loadVectors<MropeVectors>('mrope.json');
const config: MropeConfig = {
  imageTokenId: v.image_token_id,
  visionStartTokenId: v.vision_start_token_id,
  spatialMergeSize: v.spatial_merge_size,
};
const caseNamed = (name: string): MropeCase => {
  const found = v.cases.find((c) => c.name === name);
  if (!found) throw new Error(`no case ${name}`);
  return found;
};
const unpaddedLength = (mask: number[]): number => mask.reduce((a, b) => a + b, 0);


describe('ropeIndex reproduces transformers get_rope_index', () => {
  test('the vectors cover the expected cases', () => {
    expect(v.cases.map((c) => c.name)).toEqual(
      expect.arrayContaining(['reference-2.2', 'text-only', 'two-images', 'wide-image', 'left-padded-batch', 'left-padded-text-only']),
    );
  });

  test.each(v.cases.map((c) => [c.name, c] as const))('%s: position ids and rope deltas', (_name, c) => {
    const result = ropeIndex(c.input_ids, c.attention_mask, c.image_grid_thw, config);
    expect(result.positionIds).toEqual(c.position_ids);
    expect(result.ropeDeltas).toEqual(c.rope_deltas);
  });

  test.each(v.cases.map((c) => [c.name, c] as const))('%s: image tokens are where mm_token_type_ids says', (_name, c) => {
    c.input_ids.forEach((row, b) => {
      row.forEach((id, i) => expect(id === v.image_token_id ? 1 : 0).toBe(c.mm_token_type_ids[b][i]));
    });
  });

  test.each(v.cases.map((c) => [c.name, c] as const))('%s: flat layout and int64 data match the nested ids', (_name, c) => {
    const flat = ropeIndexFlat(c.input_ids, c.attention_mask, c.image_grid_thw, config);
    expect([flat.batch, flat.seq]).toEqual([c.input_ids.length, c.input_ids[0].length]);
    expect(Array.from(flat.positions)).toEqual(c.position_ids.flat(2));
    expect(Array.from(toBigInt64(flat.positions))).toEqual(c.position_ids.flat(2).map(BigInt));
    c.attention_mask.forEach((mask, b) => {
      const unpadded = c.position_ids.flatMap((axis) => axis[b].filter((_p, i) => mask[i] === 1));
      expect(flat.maxPositions[b]).toBe(Math.max(...unpadded));
    });
  });

  test('a null attention mask numbers every token', () => {
    const c = caseNamed('two-images');
    expect(ropeIndex(c.input_ids, null, c.image_grid_thw, config)).toEqual({ positionIds: c.position_ids, ropeDeltas: c.rope_deltas });
  });

  test('the PyTorch logits vectors (processor output, left-padded, one image) agree too', () => {
    const t = loadVectors<TinyLogitsVectors>('tiny_logits.json');
    const result = ropeIndex(t.input_ids, t.attention_mask, t.image_grid_thw, config);
    expect(result.positionIds).toEqual(t.position_ids);
    expect(result.ropeDeltas).toEqual(t.rope_deltas);
  });
});

describe('docs/qwen2-vl.md M-RoPE worked example', () => {
  const c = caseNamed('reference-2.2');
  const { positionIds, ropeDeltas } = ropeIndex(c.input_ids, c.attention_mask, c.image_grid_thw, config);
  const [t, h, w] = positionIds.map((axis) => axis[0]);

  test('layout: 14 text, vision_start, 64 image tokens (grid 1x16x16), vision_end, 9 text', () => {
    expect(c.input_ids[0]).toHaveLength(89);
    expect(c.image_grid_thw).toEqual([[1, 16, 16]]);
    expect(imageTokenCount([1, 16, 16], config.spatialMergeSize)).toBe(64);
  });

  test('text before the image is plain 0..14 on all axes', () => {
    for (let i = 0; i <= 14; i++) expect([t[i], h[i], w[i]]).toEqual([i, i, i]);
  });

  test('image tokens 15..78 have t=15, h=15+row, w=15+col', () => {
    for (let k = 0; k < 64; k++) {
      const row = Math.floor(k / 8);
      const col = k % 8;
      expect([t[15 + k], h[15 + k], w[15 + k]]).toEqual([15, 15 + row, 15 + col]);
    }
  });

  test('index 79 -> 23, index 88 -> 32, rope delta -56, first decode position 33', () => {
    for (const axis of [t, h, w]) {
      expect(axis[79]).toBe(23);
      expect(axis[88]).toBe(32);
    }
    expect(ropeDeltas).toEqual([-56]);
    expect(decodePosition(89, ropeDeltas[0], 0)).toBe(33);
    expect(nextPosition(32, 0)).toBe(33);
  });
});

describe('decode positions', () => {
  test.each(v.cases.map((c) => [c.name, c] as const))('%s: max + 1 + step equals the transformers rule', (_name, c) => {
    const flat = ropeIndexFlat(c.input_ids, c.attention_mask, c.image_grid_thw, config);
    c.attention_mask.forEach((mask, b) => {
      for (let step = 0; step < 4; step++) {
        // compute_3d_position_ids during generation: (attention_mask.cumsum(-1) - 1)[last] + rope_delta,
        // with the mask extended by one 1 per token fed so far.
        const extended = [...mask, ...new Array<number>(step + 1).fill(1)];
        const transformers = unpaddedLength(extended) - 1 + c.rope_deltas[b];
        expect(nextPosition(flat.maxPositions[b], step)).toBe(transformers);
        expect(decodePosition(unpaddedLength(mask), c.rope_deltas[b], step)).toBe(transformers);
      }
    });
  });

  test('text-only rows continue at their unpadded length (delta 0), padded or not', () => {
    const c = caseNamed('left-padded-text-only');
    const { ropeDeltas, maxPositions } = ropeIndexFlat(c.input_ids, c.attention_mask, [], config);
    expect(ropeDeltas).toEqual([0, 0]);
    expect(maxPositions.map((m) => nextPosition(m, 0))).toEqual([3, 6]);
  });

  test('decodePositionIds lays out [3, batch, 1] and reuses a buffer', () => {
    const out = new BigInt64Array(6);
    const data = decodePositionIds([33, 7], out);
    expect(data).toBe(out);
    expect(Array.from(data)).toEqual([33n, 7n, 33n, 7n, 33n, 7n]);
    expectEngineError(() => decodePositionIds([1, 2], new BigInt64Array(5)), 'invalid_input', 'shape_mismatch');
  });
});

describe('mismatches are input errors', () => {
  const c = caseNamed('two-images');

  test('fewer grids than image runs', () => {
    expectEngineError(() => ropeIndex(c.input_ids, null, c.image_grid_thw.slice(0, 1), config), 'invalid_input', 'image_count_mismatch');
  });

  test('more grids than image runs', () => {
    expectEngineError(() => ropeIndex(c.input_ids, null, [...c.image_grid_thw, [1, 2, 2]], config), 'invalid_input', 'image_count_mismatch');
  });

  test('a run whose length is not the token count of its grid', () => {
    const grids = [[1, 8, 8], c.image_grid_thw[1]]; // 16 tokens wanted, the run has 6
    expectEngineError(() => ropeIndex(c.input_ids, null, grids, config), 'invalid_input', 'image_token_mismatch');
    const longer = [[1, 2, 2], c.image_grid_thw[1]]; // 1 token wanted, the run goes on
    expectEngineError(() => ropeIndex(c.input_ids, null, longer, config), 'invalid_input', 'image_token_mismatch');
  });

  test('ragged rows', () => {
    expectEngineError(() => ropeIndex([[1, 2, 3], [1, 2]], null, [], config), 'invalid_input', 'shape_mismatch');
  });
});

describe('expandImageTokens', () => {
  const pad = config.imageTokenId;
  const start = config.visionStartTokenId;
  const end = v.vision_end_token_id;

  test('each placeholder becomes its image token count, in order', () => {
    const ids = [5, start, pad, end, 6, start, pad, end, 7];
    expect(expandImageTokens(ids, pad, [3, 1])).toEqual([5, start, pad, pad, pad, end, 6, start, pad, end, 7]);
  });

  test('expanding the reference prompt gives the layout get_rope_index numbered', () => {
    const c = caseNamed('reference-2.2');
    const collapsed = c.input_ids[0].filter((id, i) => id !== pad || c.input_ids[0][i - 1] !== pad);
    expect(expandImageTokens(collapsed, pad, [imageTokenCount([1, 16, 16], 2)])).toEqual(c.input_ids[0]);
  });

  test('a prompt without images is returned unchanged (as a copy)', () => {
    const ids = [1, 2, 3];
    const out = expandImageTokens(ids, pad, []);
    expect(out).toEqual(ids);
    expect(out).not.toBe(ids);
  });

  test('placeholder and image counts must agree', () => {
    expectEngineError(() => expandImageTokens([1, pad, 2], pad, []), 'invalid_input', 'image_count_mismatch');
    expectEngineError(() => expandImageTokens([1, pad, 2], pad, [4, 4]), 'invalid_input', 'image_count_mismatch');
    expectEngineError(() => expandImageTokens([1, 2], pad, [4]), 'invalid_input', 'image_count_mismatch');
  });

  test('token counts must be positive integers', () => {
    expectEngineError(() => expandImageTokens([pad], pad, [0]), 'invalid_input', 'invalid_image_tokens');
    expectEngineError(() => expandImageTokens([pad], pad, [1.5]), 'invalid_input', 'invalid_image_tokens');
  });
});
