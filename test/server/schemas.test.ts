// The request schemas: the one place where request values are checked. Sampling fields are bounded
// by the sampling module's constants in every endpoint that takes them, and toSamplingParams turns
// them into the resolved parameters the engine trusts.
import { z } from 'zod';
import { DEFAULT_SAMPLING_PARAMS, MAX_REPETITION_PENALTY, MAX_SEED, MAX_TEMPERATURE, MAX_TOP_K } from '../../src/engine/sampling/params';
import { chatSchema, evaluateSchema, generateSchemas, toSamplingParams } from '../../src/server/schemas';
import { testConfig } from '../helpers/service';

const config = testConfig();
const { json, multipart } = generateSchemas(config);
const chat = chatSchema(config);
const evaluate = evaluateSchema(config.maxNewTokens, config.defaultMaxNewTokens);

const generateBody = (fields: Record<string, unknown>) => ({ question: 'q', ...fields });
const chatBody = (fields: Record<string, unknown>) => ({ messages: [{ role: 'user', content: 'q' }], ...fields });
const evaluateBody = (fields: Record<string, unknown>) => ({ benchmark: 'spatial-synth', ...fields });

/** The distinct field paths of the schema's issues, or [] when the body passes. */
function failingFields(schema: z.ZodType, body: unknown): string[] {
  const result = schema.safeParse(body);
  return result.success ? [] : [...new Set(result.error.issues.map((issue) => issue.path.map(String).join('.')))];
}

describe('sampling fields', () => {
  test.each([
    ['temperature', -0.1],
    ['temperature', MAX_TEMPERATURE + 1],
    ['top_k', -1],
    ['top_k', 2.5],
    ['top_k', MAX_TOP_K + 1],
    ['top_p', 0],
    ['top_p', 1.01],
    ['top_p', -0.5],
    ['repetition_penalty', 0],
    ['repetition_penalty', -1],
    ['repetition_penalty', MAX_REPETITION_PENALTY + 0.5],
    ['seed', -1],
    ['seed', 1.5],
    ['seed', MAX_SEED + 2],
  ] as const)('%s %p is refused by generate, its multipart form and chat', (field, value) => {
    expect(failingFields(json, generateBody({ [field]: value }))).toEqual([field]);
    expect(failingFields(multipart, generateBody({ [field]: String(value) }))).toEqual([field]);
    expect(failingFields(chat, chatBody({ [field]: value }))).toEqual([field]);
  });

  test.each([
    ['temperature', -0.1],
    ['temperature', MAX_TEMPERATURE + 1],
    ['top_p', 0],
    ['top_p', 1.01],
    ['seed', -1],
    ['seed', 1.5],
  ] as const)('evaluate refuses %s %p with the same bounds', (field, value) => {
    expect(failingFields(evaluate, evaluateBody({ [field]: value }))).toEqual([field]);
  });

  test('non-finite values are refused (multipart strings coerce to NaN or Infinity)', () => {
    for (const value of ['NaN', 'Infinity', '-Infinity']) {
      expect(failingFields(multipart, generateBody({ temperature: value }))).toEqual(['temperature']);
      expect(failingFields(multipart, generateBody({ repetition_penalty: value }))).toEqual(['repetition_penalty']);
    }
  });

  test('boundary values are accepted', () => {
    const low = { temperature: 0, top_k: 0, top_p: 1e-9, repetition_penalty: 0.01, seed: 0 };
    const high = { temperature: MAX_TEMPERATURE, top_k: MAX_TOP_K, top_p: 1, repetition_penalty: MAX_REPETITION_PENALTY, seed: MAX_SEED };
    for (const fields of [low, high]) {
      expect(failingFields(json, generateBody(fields))).toEqual([]);
      expect(failingFields(chat, chatBody(fields))).toEqual([]);
    }
    expect(failingFields(evaluate, evaluateBody({ temperature: MAX_TEMPERATURE, top_p: 1, seed: MAX_SEED }))).toEqual([]);
  });
});

describe('toSamplingParams', () => {
  test('absent fields take the defaults (greedy, every filter off)', () => {
    expect(toSamplingParams({})).toEqual(DEFAULT_SAMPLING_PARAMS);
  });

  test('maps the request names to the engine names', () => {
    expect(toSamplingParams({ temperature: 0.7, top_p: 0.9, top_k: 50, seed: 3, repetition_penalty: 1.1 })).toEqual({
      temperature: 0.7,
      topP: 0.9,
      topK: 50,
      seed: 3,
      repetitionPenalty: 1.1,
    });
  });

  test('generate and chat give the same parameters for the same fields', () => {
    const fields = { temperature: 1, top_k: 5, seed: 9 };
    expect(toSamplingParams(json.parse(generateBody(fields)))).toEqual(toSamplingParams(chat.parse(chatBody(fields))));
  });
});
