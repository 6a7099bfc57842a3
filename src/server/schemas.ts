// Request schemas: the source of truth for each endpoint's input (docs/api.md). Limits come from the
// configuration; unknown fields of /generate are rejected so that typos do not pass silently,
// while the OpenAI-compatible endpoint ignores fields it does not use (clients send many).
import { z } from 'zod';
import type { Config } from '../config';

export const TEMPLATES = ['r1', 'direct', 'instruct', 'raw'] as const;
export const CHAT_TEMPLATES = [...TEMPLATES, 'chat'] as const;

const MAX_SEED = Number.MAX_SAFE_INTEGER;

function samplingFields(number: typeof z.number | typeof z.coerce.number) {
  return {
    temperature: number().min(0).max(100).optional(),
    top_p: number().gt(0).max(1).optional(),
    top_k: number().int().min(0).max(1_000_000).optional(),
    seed: number().int().min(0).max(MAX_SEED).optional(),
    repetition_penalty: number().gt(0).max(10).optional(),
  };
}

const booleanString = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean());

export function generateSchemas(config: Config) {
  const common = {
    question: z.string().trim().min(1, 'must not be empty').max(config.maxQuestionChars),
    template: z.enum(TEMPLATES).default('r1'),
    model: z.string().min(1).max(200).optional(),
  };
  const json = z
    .object({
      ...common,
      // base64 or a data: URL
      image: z.string().min(1).optional(),
      max_new_tokens: z.number().int().min(1).max(config.maxNewTokens).optional(),
      stream: z.boolean().default(false),
      ignore_eos: z.boolean().default(false),
      ...samplingFields(z.number),
    })
    .strict();
  const multipart = z
    .object({
      ...common,
      max_new_tokens: z.coerce.number().int().min(1).max(config.maxNewTokens).optional(),
      stream: booleanString.default(false),
      ignore_eos: booleanString.default(false),
      ...samplingFields(z.coerce.number),
    })
    .strict();
  return { json, multipart };
}

export type GenerateBody = z.infer<ReturnType<typeof generateSchemas>['json']>;

const TextPart = z.object({ type: z.literal('text'), text: z.string() });
const ImagePart = z.object({
  type: z.literal('image_url'),
  image_url: z.union([z.string().min(1), z.object({ url: z.string().min(1), detail: z.string().optional() })]),
});

export function chatSchema(config: Config) {
  const Message = z.object({
    role: z.enum(['system', 'user', 'assistant']),
    content: z.union([z.string().max(config.maxQuestionChars), z.array(z.discriminatedUnion('type', [TextPart, ImagePart])).min(1).max(16)]),
    name: z.string().optional(),
  });
  return z.object({
    model: z.string().min(1).max(200).optional(),
    messages: z.array(Message).min(1).max(64),
    max_tokens: z.number().int().min(1).max(config.maxNewTokens).optional(),
    max_completion_tokens: z.number().int().min(1).max(config.maxNewTokens).optional(),
    stream: z.boolean().default(false),
    stream_options: z.object({ include_usage: z.boolean().optional() }).optional(),
    n: z.literal(1).optional(),
    /** Extension: how the conversation becomes a prompt (default r1 on the last user turn). */
    template: z.enum(CHAT_TEMPLATES).default('r1'),
    ...samplingFields(z.number),
  });
}

export type ChatBody = z.infer<ReturnType<typeof chatSchema>>;
