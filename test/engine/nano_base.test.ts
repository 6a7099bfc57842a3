// The shipped base model (models/nano-base, docs/embedded-model.md) serves: a 448x448 spatial-synth
// picture is resized to the folder's own 168x168 bound (36 image tokens, though the service's
// MAX_PIXELS is larger), and greedy decoding continues the picture with a scene description, the
// text it was pre-trained on.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateItem } from '../../src/benchmarks/spatial_synth';
import { Engine } from '../../src/engine/engine';
import { MODELS_ROOT, testEngine } from '../helpers/service';

const shipped = existsSync(join(MODELS_ROOT, 'nano-base', 'onnx'));

(shipped ? describe : describe.skip)('models/nano-base', () => {
  let engine: Engine;
  beforeAll(() => {
    engine = testEngine({ defaultModel: 'nano-base', maxNewTokensCap: 128 });
  });
  afterAll(() => engine.dispose());

  test('a spatial-synth picture gets 36 image tokens and a scene description', async () => {
    const png = await generateItem('test', 3, 1).render();
    const result = await engine.generateText({ prompt: { template: 'raw', question: '<image>The image shows' }, images: [png], maxNewTokens: 40 });
    expect(result.usage.imageTokens).toBe(36);
    expect(result.text).toMatch(/^ \d objects, from left to right: a (small|large) (red|green|blue|yellow|purple|orange|gray|brown|cyan|pink) (cube|sphere|cylinder|cone)/);
  });
});
