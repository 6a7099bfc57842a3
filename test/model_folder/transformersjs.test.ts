// transformers.js (the reference JavaScript loader of the onnx-community layout) loads our exported
// folder from disk, with remote models disabled, and generates the same greedy tokens as PyTorch.
import { join } from 'node:path';
import { ImageCase, loadVectors, REPO_ROOT, TinyLogitsVectors } from '../helpers/vectors';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const T = require('@huggingface/transformers');

const logits = loadVectors<TinyLogitsVectors>('tiny_logits.json');
const images = loadVectors<{ cases: ImageCase[] }>('image_preprocessing.json');

describe('transformers.js on models/tiny-random', () => {
  beforeAll(() => {
    T.env.allowRemoteModels = false;
    T.env.allowLocalModels = true;
    T.env.localModelPath = join(REPO_ROOT, 'models');
  });

  test('loads from disk and generates the PyTorch greedy tokens for an image prompt', async () => {
    const processor = await T.AutoProcessor.from_pretrained('tiny-random');
    const model = await T.Qwen2VLForConditionalGeneration.from_pretrained('tiny-random', { dtype: 'fp32' });
    try {
      const imageCase = images.cases.find((c) => c.name === logits.image)!;
      const image = await T.RawImage.fromBlob(new Blob([Buffer.from(imageCase.png_base64, 'base64')]));
      const text = processor.apply_chat_template(
        [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'How many red objects are there?' }] }],
        { add_generation_prompt: true },
      );
      expect(text).toBe(logits.prompts[0]);
      const inputs = await processor(text, image);
      const promptIds = logits.input_ids[0].filter((_, i) => logits.attention_mask[0][i] === 1);
      expect(Array.from(inputs.input_ids.data as BigInt64Array, Number)).toEqual(promptIds);
      const out = await model.generate({ ...inputs, max_new_tokens: 8, do_sample: false });
      const generated = Array.from(out.data as BigInt64Array, Number).slice(promptIds.length);
      expect(generated).toEqual(logits.greedy_tokens[0]);
    } finally {
      await model.dispose();
    }
  });
});
