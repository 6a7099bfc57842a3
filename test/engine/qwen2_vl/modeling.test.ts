// Qwen2VLGraphs keeps a small model's token embeddings as a table (no embed_tokens run per decode
// step); what it returns must be exactly what the graph returns, and an id the table lacks is a
// clear input error rather than a silent read past its end.
import * as ort from 'onnxruntime-node';
import { join } from 'node:path';
import { EngineError } from '../../../src/engine/errors';
import { readModelFolder } from '../../../src/engine/model_folder';
import { EMBED_TABLE_BYTES, Qwen2VLGraphs } from '../../../src/engine/qwen2_vl/modeling';
import { TINY_MODEL_DIR } from '../../helpers/vectors';

describe('Qwen2VLGraphs token embeddings', () => {
  const folder = readModelFolder(TINY_MODEL_DIR, { dtype: 'fp32' });
  let graphs: Qwen2VLGraphs;
  let embedTokens: ort.InferenceSession;

  beforeAll(async () => {
    graphs = await Qwen2VLGraphs.open(folder, 1);
    embedTokens = await ort.InferenceSession.create(join(TINY_MODEL_DIR, 'onnx', 'embed_tokens.onnx'));
  });
  afterAll(async () => Promise.all([graphs?.dispose(), embedTokens?.release()]));

  test('the tiny model is small enough to be tabulated', () => {
    expect(folder.text.vocabSize * folder.text.hiddenSize * 4).toBeLessThanOrEqual(EMBED_TABLE_BYTES);
  });

  test('a [2, 3] batch of ids gets exactly embed_tokens output, the last id included', async () => {
    const last = folder.text.vocabSize - 1;
    const ids = BigInt64Array.from([0, 17, BigInt(last), 5, 5, 1000].map(BigInt));
    const ours = await graphs.embed(ids, 2, 3);
    const out = await embedTokens.run({ input_ids: new ort.Tensor('int64', ids, [2, 3]) });
    expect(ours.length).toBe(6 * folder.text.hiddenSize);
    expect(Array.from(ours)).toEqual(Array.from(out.inputs_embeds.data as Float32Array));
  });

  test.each([-1, 'vocab'])('id %s is an invalid_input error', async (id) => {
    const value = id === 'vocab' ? folder.text.vocabSize : (id as number);
    const error = await graphs.embed(BigInt64Array.of(1n, BigInt(value)), 1, 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineError);
    expect(error).toMatchObject({ kind: 'invalid_input', code: 'token_id_out_of_range' });
  });
});
