// Model folders: what is read from them, dtype choice, clear errors for broken folders, and the
// registry's lazy loading and least-recently-used unloading.
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors';
import { listModelFolders, readModelFolder } from '../../src/engine/model_folder';
import { copyTinyModel, testEngine } from '../helpers/service';
import { TINY_MODEL_DIR } from '../helpers/vectors';

describe('readModelFolder', () => {
  test('reads shapes and token ids, and stops on both end tokens of a base model', () => {
    const folder = readModelFolder(TINY_MODEL_DIR);
    expect(folder.name).toBe('tiny-random');
    expect(folder.text).toMatchObject({ numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, hiddenSize: 64 });
    // <|endoftext|> 1097 and <|im_end|> 1099 (the tokenizer's ids), whatever generation_config lists.
    expect(folder.eosTokenIds).toEqual([1097, 1099]);
    expect(folder.dtypes).toEqual({ embed_tokens: 'fp32', vision_encoder: 'fp32', decoder_model_merged: 'fp32' });
  });

  test('a dtype override picks the matching files, per graph or for all', () => {
    expect(readModelFolder(TINY_MODEL_DIR, { dtype: 'q4' }).graphFiles.decoder_model_merged).toMatch(/decoder_model_merged_q4\.onnx$/);
    const mixed = readModelFolder(TINY_MODEL_DIR, { dtype: { decoder_model_merged: 'q8' } });
    expect(mixed.graphFiles.decoder_model_merged).toMatch(/_quantized\.onnx$/);
    expect(mixed.graphFiles.vision_encoder).toMatch(/vision_encoder\.onnx$/);
  });

  test('a missing variant names the file and what is available', () => {
    expect(() => readModelFolder(TINY_MODEL_DIR, { dtype: 'bnb4' })).toThrow(/no onnx\/embed_tokens_bnb4\.onnx .*available for embed_tokens: embed_tokens\.onnx/);
  });

  test('a flat (older) config.json is read as well as a nested one', () => {
    const copy = copyTinyModel();
    try {
      const config = JSON.parse(readFileSync(join(copy.dir, 'config.json'), 'utf8'));
      delete config.text_config;
      writeFileSync(join(copy.dir, 'config.json'), JSON.stringify(config));
      expect(readModelFolder(copy.dir).text).toMatchObject({ numLayers: 2, hiddenSize: 64 });
    } finally {
      copy.cleanup();
    }
  });

  test('only folders with an onnx/ subfolder are models', () => {
    const copy = copyTinyModel('has-onnx');
    try {
      expect(listModelFolders([copy.root]).map((m) => m.name)).toEqual(['has-onnx']);
      rmSync(join(copy.dir, 'onnx'), { recursive: true });
      expect(listModelFolders([copy.root])).toEqual([]);
    } finally {
      copy.cleanup();
    }
  });
});

describe('broken model folders fail to load with a clear error', () => {
  const load = async (root: string, name: string) => {
    const engine = testEngine({ modelRoots: [root], defaultModel: name });
    try {
      await engine.generateText({ prompt: { template: 'raw', question: 'hi' }, images: [], maxNewTokens: 1 });
    } finally {
      await engine.dispose();
    }
  };

  test('a missing graph', async () => {
    const copy = copyTinyModel('no-decoder');
    rmSync(join(copy.dir, 'onnx', 'decoder_model_merged.onnx'));
    try {
      await expect(load(copy.root, 'no-decoder')).rejects.toMatchObject({ kind: 'model_error', code: 'graph_missing', message: expect.stringMatching(/decoder_model_merged\.onnx/) });
    } finally {
      copy.cleanup();
    }
  });

  test('a graph with the wrong input names', async () => {
    const copy = copyTinyModel('wrong-io');
    // The vision encoder in the decoder's place: none of the decoder's inputs exist.
    copyFileSync(join(copy.dir, 'onnx', 'vision_encoder.onnx'), join(copy.dir, 'onnx', 'decoder_model_merged.onnx'));
    try {
      const error = (await load(copy.root, 'wrong-io').catch((e) => e)) as EngineError;
      expect(error).toBeInstanceOf(EngineError);
      expect(error.code).toBe('graph_interface');
      expect(error.message).toMatch(/decoder_model_merged\.onnx lacks input\(s\) inputs_embeds, attention_mask, position_ids/);
      expect(error.message).toMatch(/cannot feed: pixel_values, grid_thw/);
    } finally {
      copy.cleanup();
    }
  });

  test('a corrupt graph file', async () => {
    const copy = copyTinyModel('corrupt');
    writeFileSync(join(copy.dir, 'onnx', 'embed_tokens.onnx'), 'not a model');
    try {
      await expect(load(copy.root, 'corrupt')).rejects.toMatchObject({ kind: 'model_error', code: 'graph_load_failed' });
    } finally {
      copy.cleanup();
    }
  });
});

describe('registry', () => {
  test('models load on first use and the least recently used idle one is unloaded past the budget', async () => {
    const a = copyTinyModel('model-a');
    const b = copyTinyModel('model-b');
    const bytes = readModelFolder(a.dir).bytes;
    const engine = testEngine({ modelRoots: [a.root, b.root], defaultModel: 'model-a', memoryBudgetBytes: Math.floor(bytes * 1.5) });
    try {
      expect(engine.listModels().map((m) => [m.name, m.loaded])).toEqual([['model-a', false], ['model-b', false]]);
      await engine.generateText({ prompt: { template: 'raw', question: 'a' }, images: [], maxNewTokens: 1 });
      expect(engine.registry.loadedModels().map((m) => m.name)).toEqual(['model-a']);
      await engine.generateText({ model: 'model-b', prompt: { template: 'raw', question: 'b' }, images: [], maxNewTokens: 1 });
      await new Promise((r) => setTimeout(r, 50));
      expect(engine.registry.loadedModels().map((m) => m.name)).toEqual(['model-b']);
      // and model-a comes back on demand
      await engine.generateText({ model: 'model-a', prompt: { template: 'raw', question: 'a' }, images: [], maxNewTokens: 1 });
      expect(engine.listModels().find((m) => m.name === 'model-a')?.loaded).toBe(true);
    } finally {
      await engine.dispose();
      a.cleanup();
      b.cleanup();
    }
  });
});
