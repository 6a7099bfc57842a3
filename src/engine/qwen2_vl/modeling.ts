// Qwen2-VL's three ONNX graphs (docs/export.md, "Graphs"): opened, checked against the layout, and run with
// our own tensors. Runs inside the model worker thread only.
import { EngineError } from '../errors';
import { GraphName, ModelFolder } from '../model_folder';
import { floatData, Graph, Tensor, TensorType, toFloat16 } from '../onnx/ort';
import { ModelInfo } from './model_info';

interface Expected {
  inputs: string[];
  optionalInputs?: string[];
  outputs: string[];
}

function expectedIo(numLayers: number): Record<GraphName, Expected> {
  const past: string[] = [];
  const present: string[] = [];
  for (let i = 0; i < numLayers; i++) {
    past.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
    present.push(`present.${i}.key`, `present.${i}.value`);
  }
  return {
    embed_tokens: { inputs: ['input_ids'], outputs: ['inputs_embeds'] },
    vision_encoder: { inputs: ['pixel_values', 'grid_thw'], outputs: ['image_features'] },
    decoder_model_merged: {
      inputs: ['inputs_embeds', 'attention_mask', 'position_ids', ...past],
      optionalInputs: ['num_logits_to_keep'],
      outputs: ['logits', ...present],
    },
  };
}

/** Throws a model_error naming every missing or unexpected input/output of the three graphs. */
export function checkGraphs(folder: ModelFolder, graphs: Record<GraphName, Graph>): void {
  const expected = expectedIo(folder.text.numLayers);
  const problems: string[] = [];
  for (const [name, spec] of Object.entries(expected) as [GraphName, Expected][]) {
    const graph = graphs[name];
    const missingIn = spec.inputs.filter((n) => !graph.inputs.has(n));
    const extraIn = [...graph.inputs.keys()].filter((n) => !spec.inputs.includes(n) && !(spec.optionalInputs ?? []).includes(n));
    const missingOut = spec.outputs.filter((n) => !graph.outputs.has(n));
    const file = folder.graphFiles[name].split('/').slice(-2).join('/');
    if (missingIn.length) problems.push(`${file} lacks input(s) ${missingIn.slice(0, 4).join(', ')}${missingIn.length > 4 ? ', ...' : ''}`);
    if (extraIn.length) problems.push(`${file} has input(s) this engine cannot feed: ${extraIn.join(', ')}`);
    if (missingOut.length) problems.push(`${file} lacks output(s) ${missingOut.slice(0, 4).join(', ')}${missingOut.length > 4 ? ', ...' : ''}`);
  }
  if (problems.length) {
    throw new EngineError(
      'model_error',
      'graph_interface',
      `model ${folder.name} does not match the Qwen2-VL ONNX layout (config says ${folder.text.numLayers} layers): ${problems.join('; ')}`,
    );
  }
}

/**
 * Largest token-embedding table kept in memory instead of running embed_tokens per decode step
 * (nano models: under 1 MB; a 2B model's 0.9 GB is not kept).
 */
export const EMBED_TABLE_BYTES = 32 * 2 ** 20;

export class Qwen2VLGraphs {
  readonly info: ModelInfo;
  private readonly graphs: Record<GraphName, Graph>;
  /** embed_tokens' output for every id, row after row, when it fits EMBED_TABLE_BYTES. */
  private table: Float32Array | null = null;

  private constructor(graphs: Record<GraphName, Graph>, info: ModelInfo) {
    this.graphs = graphs;
    this.info = info;
  }

  static async open(folder: ModelFolder, threads?: number, executionProviders?: readonly string[]): Promise<Qwen2VLGraphs> {
    const opened: Graph[] = [];
    try {
      // Only the decoder spins: the embedding and vision graphs run just before decoder runs, and
      // their idle threads spinning beside the decoder's cost a small model a quarter of its decode
      // rate on 2 cores (docs/performance.md, "Threads that spin").
      for (const name of ['embed_tokens', 'vision_encoder', 'decoder_model_merged'] as GraphName[]) {
        opened.push(await Graph.open(folder.graphFiles[name], { threads, executionProviders, spin: name === 'decoder_model_merged' }));
      }
      const graphs = { embed_tokens: opened[0], vision_encoder: opened[1], decoder_model_merged: opened[2] };
      checkGraphs(folder, graphs);
      const decoder = graphs.decoder_model_merged;
      const pastType = decoder.inputs.get('past_key_values.0.key')!.type as TensorType;
      const logitsShape = decoder.outputs.get('logits')!.shape;
      const logitsSize = typeof logitsShape[2] === 'number' ? logitsShape[2] : folder.text.vocabSize;
      const { numLayers, numKvHeads, headDim, hiddenSize } = folder.text;
      const result = new Qwen2VLGraphs(graphs, {
        layout: { numLayers, kvHeads: numKvHeads, headDim, type: pastType },
        hiddenSize,
        logitsSize,
        hasNumLogitsToKeep: decoder.inputs.has('num_logits_to_keep'),
        embedsType: decoder.inputs.get('inputs_embeds')!.type as TensorType,
      });
      // A decode step of a small model costs well under a millisecond, and a graph run per step
      // for its token embeddings is a tenth of it: small tables are read once, whole.
      const rows = folder.text.vocabSize;
      if (rows * hiddenSize * 4 <= EMBED_TABLE_BYTES) {
        result.table = await result.embed(BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), 1, rows);
      }
      return result;
    } catch (error) {
      await Promise.all(opened.map((g) => g.dispose()));
      throw error;
    }
  }

  /** Token embeddings [B, S, H] as float32. */
  async embed(ids: BigInt64Array, batch: number, seq: number): Promise<Float32Array> {
    const table = this.table;
    if (table) {
      const hidden = this.info.hiddenSize;
      const rows = table.length / hidden;
      const out = new Float32Array(ids.length * hidden);
      for (let i = 0; i < ids.length; i++) {
        const id = Number(ids[i]);
        if (!(id >= 0 && id < rows)) throw new EngineError('invalid_input', 'token_id_out_of_range', `token id ${id} is outside the embedding table (${rows} rows)`);
        out.set(table.subarray(id * hidden, (id + 1) * hidden), i * hidden);
      }
      return out;
    }
    const out = await this.graphs.embed_tokens.run({ input_ids: { type: 'int64', data: ids, dims: [batch, seq] } });
    return floatData(out.inputs_embeds);
  }

  /** Vision features [tokens, H] of one image as float32 (the reference export is called per image). */
  async encodeImage(pixels: Float32Array, grid: [number, number, number]): Promise<Float32Array> {
    const graph = this.graphs.vision_encoder;
    const type = graph.inputs.get('pixel_values')!.type;
    const patches = grid[0] * grid[1] * grid[2];
    const dims = [patches, pixels.length / patches];
    const pixelValues: Tensor = type === 'float16' ? { type: 'float16', data: toFloat16(pixels), dims } : { type: 'float32', data: pixels, dims };
    const out = await graph.run({ pixel_values: pixelValues, grid_thw: { type: 'int64', data: BigInt64Array.from(grid.map(BigInt)), dims: [1, 3] } });
    return floatData(out.image_features);
  }

  /**
   * One decoder call. `keepLast` asks for the logits of the last position of each row only (via
   * num_logits_to_keep when the graph has it; sliced here otherwise). Returns logits rows [B * K, V]
   * as float32 and the present KV tensors.
   */
  async decode(embeds: Float32Array, dims: [number, number], attentionMask: Tensor, positionIds: BigInt64Array, past: Tensor[], keepLast: boolean) {
    const [batch, seq] = dims;
    const { hiddenSize, embedsType, layout, hasNumLogitsToKeep } = this.info;
    const feeds: Record<string, Tensor> = {
      inputs_embeds: embedsType === 'float16'
        ? { type: 'float16', data: toFloat16(embeds), dims: [batch, seq, hiddenSize] }
        : { type: 'float32', data: embeds, dims: [batch, seq, hiddenSize] },
      attention_mask: attentionMask,
      position_ids: { type: 'int64', data: positionIds, dims: [3, batch, seq] },
    };
    if (hasNumLogitsToKeep) feeds.num_logits_to_keep = { type: 'int64', data: BigInt64Array.of(keepLast ? 1n : 0n), dims: [] };
    for (let i = 0; i < layout.numLayers; i++) {
      feeds[`past_key_values.${i}.key`] = past[2 * i];
      feeds[`past_key_values.${i}.value`] = past[2 * i + 1];
    }
    const out = await this.graphs.decoder_model_merged.run(feeds);
    const present: Tensor[] = [];
    for (let i = 0; i < layout.numLayers; i++) present.push(out[`present.${i}.key`], out[`present.${i}.value`]);
    let logits = floatData(out.logits);
    const [, positions, vocab] = out.logits.dims;
    if (keepLast && positions !== 1) {
      // Without num_logits_to_keep the graph returned every position; rows are left-padded, so
      // each row's last position is the sequence's last.
      const last = new Float32Array(batch * vocab);
      for (let b = 0; b < batch; b++) last.set(logits.subarray(((b + 1) * positions - 1) * vocab, (b + 1) * positions * vocab), b * vocab);
      logits = last;
    }
    return { logits, vocab, present };
  }

  async dispose(): Promise<void> {
    await Promise.all(Object.values(this.graphs).map((g) => g.dispose()));
  }
}
