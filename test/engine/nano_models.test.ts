// The shipped nano models (models/nano-base, models/nano-r1zero; docs/embedded-model.md), trained
// on spatial-synth's easy level, serve: a 448x448 standard picture is resized to the folders' own
// 168x168 bound (36 image tokens, though the service's MAX_PIXELS is larger); the base continues an
// easy-level picture with a scene description, the text it was pre-trained on; the R1-Zero model
// answers easy-level questions in the paper's r1 format.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateItem } from '../../src/benchmarks/spatial_synth';
import { Engine } from '../../src/engine/engine';
import { MODELS_ROOT, testEngine } from '../helpers/service';

const shipped = ['nano-base', 'nano-r1zero'].every((name) => existsSync(join(MODELS_ROOT, name, 'onnx')));

(shipped ? describe : describe.skip)('the shipped nano models', () => {
  let engine: Engine;
  beforeAll(() => {
    engine = testEngine({ defaultModel: 'nano-r1zero', maxNewTokensCap: 128 });
  });
  afterAll(() => engine.dispose());

  test('nano-base: a 448x448 picture gets 36 image tokens; an easy scene a description', async () => {
    const standard = await engine.generateText({
      model: 'nano-base', prompt: { template: 'raw', question: '<image>' }, images: [await generateItem('test', 3, 1).render()], maxNewTokens: 1,
    });
    expect(standard.usage.imageTokens).toBe(36);
    const png = await generateItem('test', 3, 1, { level: 'easy' }).render();
    const result = await engine.generateText({
      model: 'nano-base', prompt: { template: 'raw', question: '<image>In the picture there are' }, images: [png], maxNewTokens: 40,
    });
    expect(result.text).toMatch(/^ \d objects, from left to right: a (small|large) (red|green|blue|yellow|purple|orange|gray|brown|cyan|pink) (cube|sphere|cylinder|cone)/);
  });

  test('nano-r1zero: easy-level questions in the r1 template get a think block and an answer', async () => {
    for (const index of [0, 1, 2, 3]) {
      const item = generateItem('test', index, 1, { level: 'easy' });
      const result = await engine.generateText({
        prompt: { template: 'r1', question: item.record.prompt }, images: [await item.render()], maxNewTokens: 96,
      });
      expect(result.model).toBe('nano-r1zero');
      expect(result.formatOk).toBe(true);
      expect(result.think).toBeTruthy();
      expect(result.answer).toBeTruthy();
    }
  });
});
