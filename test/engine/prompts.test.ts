// Prompt templates render the same strings as trainer/prompts.py and, through the tiny-random
// tokenizer, the same input ids (test/vectors/templates.json).
import { EngineError } from '../../src/engine/errors';
import { isPromptTemplate, PROMPT_TEMPLATES, PromptTemplate, promptOpensThink, renderPrompt } from '../../src/engine/prompts';
import { ChatMessage, Tokenizer } from '../../src/engine/tokenizer';
import { loadVectors, TINY_MODEL_DIR } from '../helpers/vectors';

interface TemplateVectors {
  cases: { template: PromptTemplate; has_image: boolean; question: string; prompt: string; input_ids: number[] }[];
}

const v = loadVectors<TemplateVectors>('templates.json');

describe('prompt templates', () => {
  let tok: Tokenizer;
  let chat: (messages: ChatMessage[]) => string;

  beforeAll(async () => {
    tok = await Tokenizer.fromModelDir(TINY_MODEL_DIR);
    chat = (messages) => tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  });

  test('the vectors cover every template with and without an image', () => {
    expect(new Set(v.cases.map((c) => `${c.template}/${c.has_image}`)).size).toBe(PROMPT_TEMPLATES.length * 2);
  });

  test.each(v.cases.map((c) => [c.template, c.has_image, c] as const))('%s (image: %s)', (_t, _i, c) => {
    const prompt = renderPrompt(c.template, c.question, c.has_image, chat);
    expect(prompt).toBe(c.prompt);
    expect(tok.encode(prompt)).toEqual(c.input_ids);
  });

  test('only r1 opens the think block', () => {
    expect(PROMPT_TEMPLATES.filter(promptOpensThink)).toEqual(['r1']);
    expect(renderPrompt('r1', 'q', false).endsWith('<think>')).toBe(true);
  });

  test('instruct without a chat template is an invalid_input error', () => {
    for (const missing of [undefined, null]) {
      expect(() => renderPrompt('instruct', 'q', true, missing)).toThrow(EngineError);
      try {
        renderPrompt('instruct', 'q', true, missing);
      } catch (error) {
        expect((error as EngineError).kind).toBe('invalid_input');
        expect((error as EngineError).message).toMatch(/chat template/);
      }
    }
  });

  test('templates other than instruct do not need a chat template', () => {
    for (const template of ['r1', 'direct', 'raw'] as const) {
      expect(renderPrompt(template, 'q', true)).toBe(renderPrompt(template, 'q', true, chat));
    }
  });

  test('unknown templates are rejected', () => {
    expect(isPromptTemplate('r1')).toBe(true);
    expect(isPromptTemplate('R1')).toBe(false);
    expect(() => renderPrompt('cot' as PromptTemplate, 'q', false)).toThrow(EngineError);
  });
});
