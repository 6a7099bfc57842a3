// POST /generate (docs/api.md, "POST /generate"): an image and a question, answered in a prompt template; JSON or
// multipart in, JSON or server-sent events out.
import { randomUUID } from 'node:crypto';
import { NextFunction, Request, Response, Router } from 'express';
import multer, { MulterError } from 'multer';
import type { GenerateRequest, GenerateResult } from '../../engine/engine';
import type { AppContext } from '../app';
import { ServiceError } from '../../errors';
import { toServiceError, errorBody } from '../errors';
import { decodeInlineImage } from '../images';
import { GenerateBody, generateSchemas, toSamplingParams } from '../schemas';
import { clientGone, openSse } from '../sse';

export function generateResponse(id: string, result: GenerateResult) {
  return {
    id,
    model: result.model,
    template: result.template,
    text: result.text,
    think: result.think,
    answer: result.answer,
    format_ok: result.formatOk,
    finish_reason: result.finishReason,
    usage: {
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      image_tokens: result.usage.imageTokens,
    },
    timings: {
      queue_ms: Math.round(result.timings.queueMs),
      prefill_ms: Math.round(result.timings.prefillMs),
      decode_ms: Math.round(result.timings.decodeMs),
      total_ms: Math.round(result.timings.totalMs),
    },
  };
}

function engineRequest(body: GenerateBody, image: Buffer | undefined, signal: AbortSignal): GenerateRequest {
  return {
    model: body.model,
    prompt: { template: body.template, question: body.question },
    images: image ? [image] : [],
    maxNewTokens: body.max_new_tokens,
    ignoreEos: body.ignore_eos,
    sampling: toSamplingParams(body),
    signal,
  };
}

export function generateRouter(ctx: AppContext): Router {
  const { config, engine } = ctx;
  const schemas = generateSchemas(config);
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: config.maxImageBytes, files: 1, fields: 16, parts: 17, fieldSize: config.maxQuestionChars * 4 },
  }).single('image');

  // busboy reports a malformed body (no boundary, a part cut off or garbled) with plain Errors:
  // those are the client's 400, not a 500. MulterErrors (limits) keep their own statuses.
  const parseMultipart = (req: Request, res: Response, next: NextFunction) => {
    if (!req.is('multipart/form-data')) return next();
    upload(req, res, (error?: unknown) => {
      if (error instanceof Error && !(error instanceof MulterError)) {
        next(new ServiceError(400, 'invalid_multipart', `invalid multipart/form-data body: ${error.message.slice(0, 200)}`));
      } else next(error);
    });
  };

  const router = Router();
  router.post('/generate', parseMultipart, async (req: Request, res: Response) => {
    let body: GenerateBody;
    let image: Buffer | undefined;
    if (req.is('multipart/form-data')) {
      body = schemas.multipart.parse(req.body ?? {}) as GenerateBody;
      if (req.file) {
        if (!req.file.size) throw new ServiceError(422, 'empty_image', 'image: the uploaded file is empty');
        image = req.file.buffer;
      }
    } else if (req.is('application/json')) {
      body = schemas.json.parse(req.body);
      if (body.image !== undefined) image = decodeInlineImage(body.image, config.maxImageBytes, 'image');
    } else {
      throw new ServiceError(415, 'unsupported_content_type', 'send application/json or multipart/form-data');
    }

    const id = `gen_${randomUUID().replace(/-/g, '')}`;
    const signal = clientGone(req, res);
    if (!body.stream) {
      const result = await engine.generateText(engineRequest(body, image, signal));
      res.json(generateResponse(id, result));
      return;
    }

    // The first event is awaited before the stream opens, so that input errors (an image that
    // does not decode, an unknown model) still get their own status code.
    const events = engine.generate(engineRequest(body, image, signal));
    const first = await events.next();
    const stream = openSse(res);
    try {
      for (let item = first; !item.done; item = await events.next()) {
        const event = item.value;
        if (event.type === 'delta') stream.send('delta', { id, text: event.text });
        else stream.send('done', generateResponse(id, event.result));
      }
    } catch (error) {
      // Headers are sent: report the failure as an event in the documented envelope.
      const http = toServiceError(error);
      if (!signal.aborted) stream.send('error', { status: http.status, ...errorBody(http) });
      ctx.logError(req, error, http);
    } finally {
      stream.end();
    }
  });
  return router;
}
