// Request schemas: the source of truth for each endpoint's input (docs/api.md), and the one place
// where request values are checked: generate, chat, evaluate (runs and uploaded predictions) and
// train. Limits come from the configuration and, for sampling, from the sampling module's bounds
// (engine/sampling/params.ts); `toSamplingParams` turns the checked fields into the resolved
// parameters that the engine and its workers trust. Unknown fields of /generate are rejected so
// that typos do not pass silently, while the OpenAI-compatible endpoint ignores fields it does not
// use (clients send many).
import { z } from 'zod';
import { MAX_SAMPLES } from '../benchmarks/runs';
import { LEVEL_NAMES } from '../benchmarks/spatial_synth';
import { BENCHMARKS } from '../benchmarks/types';
import type { Config } from '../config';
import { MAX_REPETITION_PENALTY, MAX_SEED, MAX_TEMPERATURE, MAX_TOP_K, resolveSamplingParams, SamplingParams } from '../engine/sampling/params';

export const TEMPLATES = ['r1', 'direct', 'instruct', 'raw'] as const;
export const CHAT_TEMPLATES = [...TEMPLATES, 'chat'] as const;

/** The sampling fields of a request, in the request's names, bounded by the sampling module's constants. */
function samplingFields(number: typeof z.number | typeof z.coerce.number) {
  return {
    temperature: number().min(0).max(MAX_TEMPERATURE).optional(),
    top_p: number().gt(0).max(1).optional(),
    top_k: number().int().min(0).max(MAX_TOP_K).optional(),
    seed: number().int().min(0).max(MAX_SEED).optional(),
    repetition_penalty: number().gt(0).max(MAX_REPETITION_PENALTY).optional(),
  };
}

/** Sampling fields as a request gives them (after its schema checked them). */
export interface SamplingFields {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  repetition_penalty?: number;
}

/** The request's checked sampling fields as the engine's resolved parameters (defaults filled in). */
export function toSamplingParams(body: SamplingFields): SamplingParams {
  return resolveSamplingParams({
    temperature: body.temperature,
    topP: body.top_p,
    topK: body.top_k,
    seed: body.seed,
    repetitionPenalty: body.repetition_penalty,
  });
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

// Evaluation runs (docs/api.md, "Evaluation").
const SPLIT = z.string().min(1).max(64).regex(/^[\w.+-]+$/, 'letters, digits, _ . + - only');
const SUBSET = z.string().min(1).max(64).regex(/^[\w.-]+$/, 'letters, digits, _ . - only');

function levelOnlyForSpatialSynth(body: { level?: string; benchmark: string }, ctx: z.RefinementCtx) {
  if (body.level !== undefined && body.benchmark !== 'spatial-synth') {
    ctx.addIssue({ code: 'custom', path: ['level'], message: `applies to spatial-synth only, not to ${body.benchmark}` });
  }
}

export function evaluateSchema(maxNewTokens: number, defaultMaxNewTokens: number) {
  const { temperature, top_p, seed } = samplingFields(z.number);
  return z
    .object({
      benchmark: z.enum(BENCHMARKS),
      split: SPLIT.optional(),
      subsets: z.array(SUBSET).max(32).optional(),
      limit: z.number().int().min(1).max(1_000_000).optional(),
      // spatial-synth's generator level (docs/spatial-synth.md "Levels"); standard when absent.
      level: z.enum(LEVEL_NAMES).optional(),
      template: z.enum(['r1', 'direct', 'instruct']).default('r1'),
      strategy: z.enum(['r1', 'strict']).default('r1'),
      max_new_tokens: z.number().int().min(1).max(maxNewTokens).default(defaultMaxNewTokens),
      model: z.string().min(1).max(200).optional(),
      // Several responses per item (docs/evaluation.md, "Several samples per item").
      samples: z.number().int().min(1).max(MAX_SAMPLES).default(1),
      temperature,
      top_p,
      seed,
    })
    .strict()
    .superRefine((body, ctx) => {
      levelOnlyForSpatialSynth(body, ctx);
      if (body.samples > 1 && !body.temperature) {
        ctx.addIssue({ code: 'custom', path: ['samples'], message: 'above 1 needs a temperature above 0 (greedy decoding gives the same response every time)' });
      }
    });
}

/** The query of POST /evaluate/predictions: what selects and scores the items, and a model label. */
export const uploadQuerySchema = z
  .object({
    benchmark: z.enum(BENCHMARKS),
    split: SPLIT.optional(),
    // Comma-separated in the query string.
    subsets: z
      .string()
      .max(32 * 65)
      .transform((text) => text.split(',').filter(Boolean))
      .pipe(z.array(SUBSET).max(32))
      .optional(),
    limit: z.string().regex(/^\d{1,7}$/, 'an integer from 1 to 1,000,000').transform(Number).pipe(z.number().int().min(1).max(1_000_000)).optional(),
    level: z.enum(LEVEL_NAMES).optional(),
    template: z.enum(['r1', 'direct', 'instruct']).default('r1'),
    strategy: z.enum(['r1', 'strict']).default('r1'),
    model: z.string().min(1).max(200).default('uploaded'),
  })
  .strict()
  .superRefine(levelOnlyForSpatialSynth);

// Training jobs (docs/api.md, "Training"). The trainer's own sampling (temperature, seed) has the
// trainer's bounds, not the engine's.
const noControlChars = (s: string) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
const location = (field: string) => z.string().min(1).max(1024).refine(noControlChars, `${field} must not contain control characters`);

/**
 * POST /admin/train. Defaults are the trainer's (docs/training.md), except base_model and dataset;
 * so are the types, choices and bounds of its fields that are trainer keys, where the trainer
 * states one (test/vectors/training_options.json, test/training/training_options.test.ts).
 */
export const trainSchema = z
  .object({
    base_model: location('base_model').optional(),
    dataset: location('dataset').optional(),
    level: z.enum(LEVEL_NAMES).optional(),
    split: SPLIT.optional(),
    steps: z.number().int().min(1).max(10_000_000).optional(),
    num_generations: z.number().int().min(2).max(256).optional(),
    prompts_per_step: z.number().int().min(1).max(100_000).optional(),
    // 0 is the trainer's own "auto" (its default: by the model's size).
    learning_rate: z.number().min(0).max(1).optional(),
    beta: z.number().min(0).max(100).optional(),
    temperature: z.number().gt(0).max(10).optional(),
    max_completion_length: z.number().int().min(1).max(65_536).optional(),
    // Qwen2-VL's own bounds: at least one 28x28 patch group, at most its 12,845,056 default.
    max_pixels: z.number().int().min(3136).max(12_845_056).optional(),
    device: z.enum(['auto', 'cpu', 'cuda']).optional(),
    seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
    save_steps: z.number().int().min(1).max(10_000_000).optional(),
    template: z.enum(['r1', 'instruct']).optional(),
    freeze_vision: z.boolean().optional(),
    freeze_llm: z.boolean().optional(),
    nodes: z.number().int().min(1).max(64).optional(),
    gpus: z.number().int().min(1).max(16).optional(),
  })
  .strict();

/** GET /admin/train/<id>/rollouts query: a step (the newest when omitted) and how many lines. */
export const rolloutsQuery = z
  .object({
    step: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    limit: z.coerce.number().int().min(1).max(256).default(32),
  })
  .strict();
