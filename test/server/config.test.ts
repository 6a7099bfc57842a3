// The service's model choice when nothing is configured: the project's trained R1-Zero model.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { EMBEDDED_MODEL, loadConfig, REPO_ROOT } from '../../src/config';

describe('default model', () => {
  test('with no MODEL_DIR or DEFAULT_MODEL a fresh clone serves the shipped, trained nano-r1zero', () => {
    expect(EMBEDDED_MODEL).toBe('nano-r1zero');
    expect(loadConfig({}).defaultModel).toBe('nano-r1zero');
    for (const graph of ['embed_tokens', 'vision_encoder', 'decoder_model_merged']) {
      expect(existsSync(join(REPO_ROOT, 'models', EMBEDDED_MODEL, 'onnx', `${graph}.onnx`))).toBe(true);
    }
    expect(existsSync(join(REPO_ROOT, 'models', EMBEDDED_MODEL, 'model.safetensors'))).toBe(true);
  });

  test('DEFAULT_MODEL and MODEL_DIR choose another one', () => {
    expect(loadConfig({ DEFAULT_MODEL: 'tiny-random' }).defaultModel).toBe('tiny-random');
    expect(loadConfig({ MODEL_DIR: join(REPO_ROOT, 'models', 'tiny-random') }).defaultModel).toBe('tiny-random');
  });
});
