// POST /v1/chat/completions: OpenAI-compatible chat (docs/api.md, "POST /v1/chat/completions"). The think text goes to
// `reasoning_content`, the answer to `content`. `template` (an extension) says how the
// conversation becomes a prompt: r1 (default), direct, instruct and raw use the last user turn as
// the question; chat renders the whole conversation with the model's chat template.
import { randomUUID } from 'node:crypto';
import { Request, Response, Router } from 'express';
import type { GenerateRequest, GenerateResult } from '../../engine/engine';
import { promptOpensThink } from '../../engine/prompts';
import type { ChatMessage } from '../../engine/tokenizer';
import type { AppContext } from '../app';
import { ServiceError } from '../../errors';
import { errorBody, toServiceError } from '../errors';
import { decodeInlineImage, fetchRemoteImage } from '../images';
import { contentOf, ReasoningSplitter } from '../reasoning';
import { ChatBody, chatSchema, toSamplingParams } from '../schemas';
import { clientGone, openSse } from '../sse';

type Part = Exclude<ChatBody['messages'][number]['content'], string>[number];

async function imageBytes(ctx: AppContext, part: Extract<Part, { type: 'image_url' }>, field: string): Promise<Buffer> {
  const url = typeof part.image_url === 'string' ? part.image_url : part.image_url.url;
  if (url.startsWith('data:')) return decodeInlineImage(url, ctx.config.maxImageBytes, field);
  return fetchRemoteImage(url, { allowedHosts: ctx.config.allowedImageHosts, maxBytes: ctx.config.maxImageBytes }, field);
}

async function toEngineRequest(ctx: AppContext, body: ChatBody, signal: AbortSignal): Promise<GenerateRequest> {
  const common = {
    model: body.model,
    maxNewTokens: body.max_completion_tokens ?? body.max_tokens,
    sampling: toSamplingParams(body),
    signal,
  };
  if (body.template === 'chat') {
    const images: Buffer[] = [];
    const messages: ChatMessage[] = [];
    for (const [m, message] of body.messages.entries()) {
      if (typeof message.content === 'string') {
        messages.push({ role: message.role, content: message.content });
        continue;
      }
      const parts = [];
      for (const [p, part] of message.content.entries()) {
        if (part.type === 'text') parts.push({ type: 'text', text: part.text });
        else {
          images.push(await imageBytes(ctx, part, `messages.${m}.content.${p}`));
          parts.push({ type: 'image' });
        }
      }
      messages.push({ role: message.role, content: parts });
    }
    return { ...common, prompt: { template: 'chat', messages }, images };
  }

  const lastUser = body.messages.map((m, i) => ({ m, i })).filter(({ m }) => m.role === 'user').at(-1);
  if (!lastUser) throw new ServiceError(400, 'no_user_message', 'messages: the conversation has no user message');
  const { m: message, i } = lastUser;
  const parts = typeof message.content === 'string' ? [{ type: 'text' as const, text: message.content }] : message.content;
  const question = parts.flatMap((part) => (part.type === 'text' ? [part.text] : [])).join('\n').trim();
  if (!question) throw new ServiceError(400, 'empty_question', `messages.${i}: the last user message has no text`);
  // Counted before any image is fetched or decoded.
  if (parts.filter((part) => part.type === 'image_url').length > 1) {
    throw new ServiceError(400, 'too_many_images', `messages.${i}: template ${body.template} takes at most one image per question`);
  }
  const images: Buffer[] = [];
  for (const [p, part] of parts.entries()) if (part.type === 'image_url') images.push(await imageBytes(ctx, part, `messages.${i}.content.${p}`));
  return { ...common, prompt: { template: body.template, question }, images };
}

function usage(result: GenerateResult) {
  const { promptTokens, completionTokens } = result.usage;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export function chatRouter(ctx: AppContext): Router {
  const schema = chatSchema(ctx.config);
  const router = Router();
  router.post('/v1/chat/completions', async (req: Request, res: Response) => {
    if (!req.is('application/json')) throw new ServiceError(415, 'unsupported_content_type', 'send application/json');
    const body = schema.parse(req.body);
    const signal = clientGone(req, res);
    const request = await toEngineRequest(ctx, body, signal);
    const opensThink = body.template !== 'chat' && promptOpensThink(body.template);
    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      const result = await ctx.engine.generateText(request);
      res.json({
        id,
        object: 'chat.completion',
        created,
        model: result.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: contentOf(result, opensThink), reasoning_content: result.think },
            finish_reason: result.finishReason,
          },
        ],
        usage: usage(result),
      });
      return;
    }

    const events = ctx.engine.generate(request);
    const first = await events.next();
    const stream = openSse(res);
    const model = request.model ?? ctx.config.defaultModel;
    const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) =>
      stream.send(null, { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
    const splitter = new ReasoningSplitter(opensThink);
    const sendSplit = (parts: { reasoning: string; content: string }) => {
      if (parts.reasoning) chunk({ reasoning_content: parts.reasoning });
      if (parts.content) chunk({ content: parts.content });
    };
    try {
      chunk({ role: 'assistant', content: '' });
      for (let item = first; !item.done; item = await events.next()) {
        const event = item.value;
        if (event.type === 'delta') sendSplit(splitter.push(event.text));
        else {
          sendSplit(splitter.flush());
          chunk({}, event.result.finishReason);
          if (body.stream_options?.include_usage) {
            stream.send(null, { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage(event.result) });
          }
        }
      }
      stream.send(null, '[DONE]');
    } catch (error) {
      const http = toServiceError(error);
      if (!signal.aborted) stream.send(null, errorBody(http));
      ctx.logError(req, error, http);
    } finally {
      stream.end();
    }
  });
  return router;
}
