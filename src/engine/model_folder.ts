// A model folder in the onnx-community Qwen2-VL layout (docs/architecture.md, "A model folder";
// docs/export.md): its JSON files read into one typed view, and the graph files chosen per dtype.
// Works for our own exports (nested text_config plus flat mirrors) and for real downloads (flat
// Qwen2-VL config.json).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { EngineError } from './errors';

export const GRAPHS = ['embed_tokens', 'vision_encoder', 'decoder_model_merged'] as const;
export type GraphName = (typeof GRAPHS)[number];

// transformers.js file suffixes per dtype (docs/qwen2-vl.md, "Graphs and how they run").
export const DTYPE_SUFFIX = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const;
export type Dtype = keyof typeof DTYPE_SUFFIX;
export type DtypeChoice = Dtype | Partial<Record<GraphName, Dtype>>;

export interface TextShape {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
}

export interface ModelFolder {
  name: string;
  dir: string;
  text: TextShape;
  imageTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  spatialMergeSize: number;
  /** Every id that ends a completion: generation_config's eos ids plus both end tokens of Qwen2. */
  eosTokenIds: number[];
  padTokenId: number;
  preprocessor: Record<string, unknown>;
  dtypes: Record<GraphName, Dtype>;
  graphFiles: Record<GraphName, string>;
  /** Bytes of the chosen graphs and their external data: what loading them costs in memory. */
  bytes: number;
}

type Json = Record<string, unknown>;

function readJson(dir: string, file: string, required: boolean): Json {
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (!required) return {};
    throw new EngineError('model_error', 'model_file_missing', `model folder ${dir} has no ${file}`);
  }
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Json;
  } catch (error) {
    throw new EngineError('model_error', 'model_file_invalid', `${path} is not valid JSON: ${(error as Error).message}`);
  }
}

function int(obj: Json, key: string, where: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new EngineError('model_error', 'model_config_invalid', `${where} lacks the integer field "${key}"`);
  }
  return value;
}

function ids(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number');
  return [];
}

/** Text fields from `text_config` when present, else from the flat top level (older configs). */
function textShape(config: Json, where: string): TextShape {
  const text = (typeof config.text_config === 'object' && config.text_config !== null ? config.text_config : config) as Json;
  const hiddenSize = int(text, 'hidden_size', where);
  const numHeads = int(text, 'num_attention_heads', where);
  return {
    hiddenSize,
    numLayers: int(text, 'num_hidden_layers', where),
    numHeads,
    numKvHeads: typeof text.num_key_value_heads === 'number' ? text.num_key_value_heads : numHeads,
    headDim: typeof text.head_dim === 'number' ? text.head_dim : hiddenSize / numHeads,
    vocabSize: int(text, 'vocab_size', where),
  };
}

function configuredDtypes(config: Json): Partial<Record<GraphName, Dtype>> {
  const js = config['transformers.js_config'] as Json | undefined;
  const dtype = js?.dtype;
  if (typeof dtype === 'string') return Object.fromEntries(GRAPHS.map((g) => [g, dtype as Dtype]));
  if (typeof dtype === 'object' && dtype !== null) return dtype as Partial<Record<GraphName, Dtype>>;
  return {};
}

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}

function chooseGraphFiles(dir: string, config: Json, choice: DtypeChoice | undefined) {
  const configured = configuredDtypes(config);
  const override: Partial<Record<GraphName, Dtype>> =
    typeof choice === 'string' ? Object.fromEntries(GRAPHS.map((g) => [g, choice])) : (choice ?? {});
  const dtypes = {} as Record<GraphName, Dtype>;
  const graphFiles = {} as Record<GraphName, string>;
  let bytes = 0;
  const onnxDir = join(dir, 'onnx');
  for (const graph of GRAPHS) {
    const dtype = override[graph] ?? configured[graph] ?? 'fp32';
    if (!(dtype in DTYPE_SUFFIX)) {
      throw new EngineError('model_error', 'unknown_dtype', `unknown dtype "${dtype}" for ${graph}; use one of ${Object.keys(DTYPE_SUFFIX).join(', ')}`);
    }
    const file = join(onnxDir, `${graph}${DTYPE_SUFFIX[dtype]}.onnx`);
    if (!existsSync(file)) {
      const available = existsSync(onnxDir) ? readdirSync(onnxDir).filter((f) => f.startsWith(graph) && f.endsWith('.onnx')) : [];
      throw new EngineError(
        'model_error',
        'graph_missing',
        `model ${basename(dir)} has no onnx/${basename(file)} (dtype ${dtype}); available for ${graph}: ${available.join(', ') || 'none'}`,
      );
    }
    dtypes[graph] = dtype;
    graphFiles[graph] = file;
    bytes += fileSize(file) + fileSize(`${file}_data`);
  }
  return { dtypes, graphFiles, bytes };
}

export function readModelFolder(dir: string, options: { dtype?: DtypeChoice; name?: string } = {}): ModelFolder {
  const name = options.name ?? basename(dir);
  const config = readJson(dir, 'config.json', true);
  const generation = readJson(dir, 'generation_config.json', false);
  const preprocessor = readJson(dir, 'preprocessor_config.json', true);
  const where = `${name}/config.json`;
  const vision = (config.vision_config ?? {}) as Json;
  const text = textShape(config, where);
  const tokenizerConfig = readJson(dir, 'tokenizer_config.json', false);
  const eos = new Set([...ids(generation.eos_token_id), ...ids(config.eos_token_id)]);
  // Both end tokens end a completion of a Qwen2 base model (docs/method.md, "End tokens"); their ids come from
  // the tokenizer, since a model folder may only list one of them.
  for (const token of ['<|endoftext|>', '<|im_end|>']) {
    const id = addedTokenId(tokenizerConfig, token);
    if (id !== undefined) eos.add(id);
  }
  const { dtypes, graphFiles, bytes } = chooseGraphFiles(dir, config, options.dtype);
  return {
    name,
    dir,
    text,
    imageTokenId: int(config, 'image_token_id', where),
    visionStartTokenId: int(config, 'vision_start_token_id', where),
    visionEndTokenId: int(config, 'vision_end_token_id', where),
    spatialMergeSize: typeof vision.spatial_merge_size === 'number' ? vision.spatial_merge_size : 2,
    eosTokenIds: [...eos].sort((a, b) => a - b),
    padTokenId: ids(generation.pad_token_id)[0] ?? ids(config.pad_token_id)[0] ?? [...eos][0] ?? 0,
    preprocessor,
    dtypes,
    graphFiles,
    bytes,
  };
}

function addedTokenId(tokenizerConfig: Json, content: string): number | undefined {
  const decoder = tokenizerConfig.added_tokens_decoder as Record<string, { content?: string }> | undefined;
  if (!decoder) return undefined;
  for (const [id, token] of Object.entries(decoder)) if (token?.content === content) return Number(id);
  return undefined;
}

/**
 * Every folder with an onnx/ subfolder directly under the given roots, by folder name, plus the
 * explicitly named folders (which win over a root's folder of the same name).
 */
export function listModelFolders(roots: string[], explicit: { name: string; dir: string }[] = []): { name: string; dir: string }[] {
  const found = new Map<string, string>(explicit.map(({ name, dir }) => [name, dir]));
  for (const root of roots) {
    if (!existsSync(root)) continue;
    for (const entry of readdirSync(root, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const dir = join(root, entry.name);
      if (existsSync(join(dir, 'onnx')) && !found.has(entry.name)) found.set(entry.name, dir);
    }
  }
  return [...found.entries()].map(([name, dir]) => ({ name, dir })).sort((a, b) => a.name.localeCompare(b.name));
}
