// Prompt templates, a shared rule with trainer/prompts.py (pinned by test/vectors/templates.json).
// The prompts are the paper's (docs/method.md, "Prompts"); `<|image_pad|>` stands for the image and is
// expanded to the image's token count later.
import { EngineError } from './errors';
import type { ChatMessage } from './tokenizer';

export type PromptTemplate = 'r1' | 'direct' | 'instruct' | 'raw';

export const PROMPT_TEMPLATES: readonly PromptTemplate[] = ['r1', 'direct', 'instruct', 'raw'];

export const IMAGE_PLACEHOLDER = '<|vision_start|><|image_pad|><|vision_end|>';

export const R1_INTRO =
  'A conversation between User and Assistant. The user asks a question about the image, and the Assistant solves it.';
export const R1_THINKING =
  ' The assistant first thinks about the reasoning process in the mind and then provides the user with the answer.';
// docs/method.md, "The other templates": the suffix for Instruct models.
export const INSTRUCT_SUFFIX = 'Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.';

/** Renders the model's chat template with a generation prompt (needed by `instruct` only). */
export type ChatTemplateRenderer = (messages: ChatMessage[]) => string;

export function isPromptTemplate(value: unknown): value is PromptTemplate {
  return typeof value === 'string' && (PROMPT_TEMPLATES as readonly string[]).includes(value);
}

/** Whether the prompt itself opens the think block, so the completion starts inside it (docs/method.md, "Prompts"). */
export function promptOpensThink(template: PromptTemplate): boolean {
  return template === 'r1';
}

// docs/method.md, "Prompts": the base-model prompt is flat text (no roles); with an image, the vision tokens
// and then the literal text `<image>` come first, as in the original code.
function withImage(text: string, hasImage: boolean): string {
  return hasImage ? `${IMAGE_PLACEHOLDER}<image>${text}` : text;
}

/** The full prompt text for `question`, identical to trainer/prompts.py `render_prompt`. */
export function renderPrompt(template: PromptTemplate, question: string, hasImage: boolean, chatTemplate?: ChatTemplateRenderer | null): string {
  switch (template) {
    case 'r1':
      // docs/method.md, "Prompts": ends in `<think>`, the completion starts inside the think block.
      return withImage(`${R1_INTRO}${R1_THINKING}\nUser: ${question} \nAssistant: Let me solve this step by step.\n<think>`, hasImage);
    case 'direct':
      // docs/method.md, "The other templates": no sentence about thinking, ends in `Assistant: `.
      return withImage(`${R1_INTRO}\nUser: ${question} \nAssistant: `, hasImage);
    case 'raw':
      return (hasImage ? IMAGE_PLACEHOLDER : '') + question;
    case 'instruct': {
      // docs/method.md, "The other templates": the model's own chat template, the question followed by the paper's suffix.
      if (chatTemplate === undefined || chatTemplate === null) {
        throw new EngineError('invalid_input', 'chat_template_missing', "the instruct template needs the model's chat template, and this model has none");
      }
      const content = [...(hasImage ? [{ type: 'image' }] : []), { type: 'text', text: `${question} ${INSTRUCT_SUFFIX}` }];
      return chatTemplate([{ role: 'user', content }]);
    }
    default:
      throw new EngineError('invalid_input', 'unknown_template', `unknown template ${JSON.stringify(template)}; choose one of ${PROMPT_TEMPLATES.join(', ')}`);
  }
}
