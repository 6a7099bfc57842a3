// M-RoPE (multimodal rotary position) ids for Qwen2-VL: docs/qwen2-vl.md, "M-RoPE position ids".
//
// The rules are those of transformers' `Qwen2VLModel.get_rope_index` (prefill) and
// `compute_3d_position_ids` (decode), which produced test/vectors/mrope.json:
// - text tokens get the same running index on all three axes (temporal, height, width);
// - an image of grid (t, h, w) becomes t x (h/merge) x (w/merge) tokens starting at the running
//   index `base`: token (ti, row, col) gets (base + ti, base + row, base + col); the running index
//   then advances by max(h, w) / merge, so text resumes at max(previous) + 1;
// - only unpadded tokens (mask 1) are numbered; padding positions hold 0;
// - rope_delta = max(position) + 1 - (number of unpadded tokens); text-only rows get 0;
// - decode: the token at unpadded index i (i >= prompt length) uses i + rope_delta on all axes,
//   which equals max(prompt position) + 1 + step.
//
// Pure functions: no onnxruntime, no I/O.
import { EngineError } from '../errors';

export interface MropeConfig {
  /** `<|image_pad|>` (151655 for Qwen2-VL). */
  imageTokenId: number;
  /**
   * `<|vision_start|>` (151652). Not needed to number positions: like transformers (which reads
   * `mm_token_type_ids`), images are found as runs of `imageTokenId`. Kept so one config object
   * describes the image layout.
   */
  visionStartTokenId: number;
  /** Vision merger's spatial merge size (2 for Qwen2-VL). */
  spatialMergeSize: number;
}

/** Position ids laid out flat as [3][batch][seq] (row-major), plus per-row facts. */
export interface RopeIndexFlat {
  /** axis * batch * seq + row * seq + col; padding positions hold 0. */
  positions: Int32Array;
  batch: number;
  seq: number;
  /** max position + 1 - unpadded length, per row (0 for text-only rows). */
  ropeDeltas: number[];
  /** Largest prompt position of each row on any axis (-1 for a row with no unpadded token). */
  maxPositions: number[];
}

export interface RopeIndex {
  /** [3][batch][seq]: temporal, height, width. */
  positionIds: number[][][];
  ropeDeltas: number[];
}

type Rows = ReadonlyArray<ArrayLike<number>>;

function invalid(code: string, message: string): EngineError {
  return new EngineError('invalid_input', code, message);
}

/** Number of LLM tokens an image of grid (t, h, w) becomes: t * (h/merge) * (w/merge) (docs/qwen2-vl.md, "Image tokens"). */
export function imageTokenCount(gridThw: ArrayLike<number>, spatialMergeSize: number): number {
  checkGrid(gridThw);
  return gridThw[0] * Math.floor(gridThw[1] / spatialMergeSize) * Math.floor(gridThw[2] / spatialMergeSize);
}

function checkGrid(grid: ArrayLike<number>): void {
  if (grid.length !== 3 || !Array.from(grid).every((v) => Number.isInteger(v) && v > 0)) {
    throw invalid('invalid_image_grid', `image grid must be three positive integers (t, h, w), got [${Array.from(grid).join(', ')}]`);
  }
}

/**
 * Replaces the k-th `<|image_pad|>` placeholder of a prompt by `tokensPerImage[k]` copies of it
 * (the processor's expansion; docs/qwen2-vl.md, "Image tokens": t*h*w/4 tokens per image).
 */
export function expandImageTokens(ids: ArrayLike<number>, imageTokenId: number, tokensPerImage: ArrayLike<number>): number[] {
  let placeholders = 0;
  let extra = 0;
  for (let i = 0; i < ids.length; i++) if (ids[i] === imageTokenId) placeholders++;
  if (placeholders !== tokensPerImage.length) {
    throw invalid('image_count_mismatch', `the prompt has ${placeholders} image placeholder(s) but ${tokensPerImage.length} image(s) were given`);
  }
  for (let k = 0; k < tokensPerImage.length; k++) {
    const n = tokensPerImage[k];
    if (!Number.isInteger(n) || n < 1) throw invalid('invalid_image_tokens', `tokens per image must be a positive integer, got ${n}`);
    extra += n - 1;
  }
  const out = new Array<number>(ids.length + extra);
  let o = 0;
  let k = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === imageTokenId) {
      for (let c = tokensPerImage[k++]; c > 0; c--) out[o++] = id;
    } else {
      out[o++] = id;
    }
  }
  return out;
}

/**
 * Positions of the unpadded tokens of one row, written to `positions` (flat [3][batch][seq]) at the
 * row's own indices. Returns the next grid index and the row's max position.
 */
function numberRow(
  ids: ArrayLike<number>,
  mask: ArrayLike<number> | null,
  grids: Rows,
  gridIndex: number,
  config: MropeConfig,
  positions: Int32Array,
  rowBase: number,
  axisStride: number,
): { gridIndex: number; maxPosition: number; unpadded: number } {
  const seq = ids.length;
  const merge = config.spatialMergeSize;
  let current = 0; // transformers' `current_pos`
  let maxPosition = -1;
  let unpadded = 0;
  let i = 0;
  const set = (col: number, t: number, h: number, w: number): void => {
    positions[rowBase + col] = t;
    positions[axisStride + rowBase + col] = h;
    positions[2 * axisStride + rowBase + col] = w;
  };
  const kept = (col: number): boolean => mask === null || mask[col] !== 0;
  while (i < seq) {
    if (!kept(i)) {
      i++;
      continue;
    }
    if (ids[i] !== config.imageTokenId) {
      set(i, current, current, current);
      maxPosition = Math.max(maxPosition, current);
      current++;
      unpadded++;
      i++;
      continue;
    }
    // A run of image tokens (padding inside the run is skipped, as transformers drops masked tokens
    // before grouping) is one image: the next grid in order.
    if (gridIndex >= grids.length) {
      throw invalid('image_count_mismatch', `more image token runs than image grids (${grids.length})`);
    }
    const grid = grids[gridIndex++];
    const count = imageTokenCount(grid, merge);
    const gh = Math.floor(grid[1] / merge);
    const gw = Math.floor(grid[2] / merge);
    let k = 0;
    for (; i < seq && k < count; i++) {
      if (!kept(i)) continue;
      if (ids[i] !== config.imageTokenId) break;
      const ti = Math.floor(k / (gh * gw));
      const rest = k - ti * gh * gw;
      const row = Math.floor(rest / gw);
      const col = rest - row * gw;
      set(i, current + ti, current + row, current + col);
      k++;
      unpadded++;
    }
    let next = i; // the next unpadded token must not continue the run
    while (next < seq && !kept(next)) next++;
    if (k !== count || (next < seq && ids[next] === config.imageTokenId)) {
      throw invalid('image_token_mismatch', `image ${gridIndex - 1} with grid [${Array.from(grid).join(', ')}] needs ${count} image tokens in one run`);
    }
    maxPosition = Math.max(maxPosition, current + Math.max(grid[0] - 1, gh - 1, gw - 1));
    current += Math.max(gh, gw); // transformers: max(grid_h, grid_w) // spatial_merge_size
  }
  return { gridIndex, maxPosition, unpadded };
}

/**
 * transformers' get_rope_index for text + images, flat: positions as Int32Array [3][batch][seq].
 * Images are consumed in order across the batch (row 0's first, then row 1's, ...). Throws
 * EngineError('invalid_input', 'image_count_mismatch') when the image token runs and the grids
 * disagree in number (transformers fails or silently ignores extra grids), 'image_token_mismatch'
 * when a run's length is not its grid's token count.
 */
export function ropeIndexFlat(inputIds: Rows, attentionMask: Rows | null, imageGridThw: Rows, config: MropeConfig): RopeIndexFlat {
  const batch = inputIds.length;
  const seq = batch === 0 ? 0 : inputIds[0].length;
  if (!Number.isInteger(config.spatialMergeSize) || config.spatialMergeSize < 1) {
    throw invalid('invalid_merge_size', `spatial merge size must be a positive integer, got ${config.spatialMergeSize}`);
  }
  if (attentionMask !== null && attentionMask.length !== batch) {
    throw invalid('shape_mismatch', `attention mask has ${attentionMask.length} rows, input ids ${batch}`);
  }
  const positions = new Int32Array(3 * batch * seq);
  const ropeDeltas: number[] = [];
  const maxPositions: number[] = [];
  let gridIndex = 0;
  for (let b = 0; b < batch; b++) {
    const ids = inputIds[b];
    const mask = attentionMask === null ? null : attentionMask[b];
    if (ids.length !== seq || (mask !== null && mask.length !== seq)) {
      throw invalid('shape_mismatch', `row ${b}: every row of input ids and attention mask must have length ${seq}`);
    }
    const row = numberRow(ids, mask, imageGridThw, gridIndex, config, positions, b * seq, batch * seq);
    gridIndex = row.gridIndex;
    maxPositions.push(row.maxPosition);
    // transformers: llm_positions.max() + 1 - len(unpadded ids); an empty row has delta 0.
    ropeDeltas.push(row.unpadded === 0 ? 0 : row.maxPosition + 1 - row.unpadded);
  }
  if (gridIndex !== imageGridThw.length) {
    throw invalid('image_count_mismatch', `${imageGridThw.length} image grid(s) but ${gridIndex} image token run(s)`);
  }
  return { positions, batch, seq, ropeDeltas, maxPositions };
}

/** transformers' get_rope_index for text + images: position ids [3][batch][seq] and rope deltas. */
export function ropeIndex(inputIds: Rows, attentionMask: Rows | null, imageGridThw: Rows, config: MropeConfig): RopeIndex {
  const flat = ropeIndexFlat(inputIds, attentionMask, imageGridThw, config);
  const { positions, batch, seq } = flat;
  const positionIds: number[][][] = [];
  for (let axis = 0; axis < 3; axis++) {
    const rows: number[][] = [];
    for (let b = 0; b < batch; b++) {
      const start = (axis * batch + b) * seq;
      rows.push(Array.from(positions.subarray(start, start + seq)));
    }
    positionIds.push(rows);
  }
  return { positionIds, ropeDeltas: flat.ropeDeltas };
}

/** Int64 data for an onnxruntime tensor of dims [3, batch, seq] (docs/export.md, "Graphs": `position_ids`). */
export function toBigInt64(positions: ArrayLike<number>): BigInt64Array {
  const out = new BigInt64Array(positions.length);
  for (let i = 0; i < positions.length; i++) out[i] = BigInt(positions[i]);
  return out;
}

/**
 * Position of a row's decode token, as transformers computes it during generation
 * (compute_3d_position_ids: `attention_mask.cumsum(-1) - 1 + rope_delta`): the token's unpadded
 * index (prompt length + step) plus the row's rope delta; the same on all three axes.
 * `step` counts tokens already generated and fed back before this one (0 for the first).
 */
export function decodePosition(unpaddedPromptLength: number, ropeDelta: number, step: number): number {
  return unpaddedPromptLength + step + ropeDelta;
}

/**
 * The same rule from the prompt's positions (docs/qwen2-vl.md, "M-RoPE position ids", rule 5): max prompt position + 1 + step.
 * Equal to decodePosition, since rope_delta = max + 1 - unpadded length.
 */
export function nextPosition(maxPromptPosition: number, step: number): number {
  return maxPromptPosition + 1 + step;
}

/**
 * position_ids for one decode step of a batch, dims [3, batch, 1]: `positions[b]` on all three axes.
 * Writes into `out` when given (length 3 * batch) so a decode loop can reuse one buffer.
 */
export function decodePositionIds(positions: ArrayLike<number>, out?: BigInt64Array): BigInt64Array {
  const batch = positions.length;
  const data = out ?? new BigInt64Array(3 * batch);
  if (data.length !== 3 * batch) throw invalid('shape_mismatch', `decode position buffer must hold ${3 * batch} values, has ${data.length}`);
  for (let b = 0; b < batch; b++) {
    const value = BigInt(positions[b]);
    data[b] = value;
    data[batch + b] = value;
    data[2 * batch + b] = value;
  }
  return data;
}
