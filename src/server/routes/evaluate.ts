// Evaluation runs over HTTP (docs/api.md, "Evaluation"): create (202 + Location, or ?wait=true for
// the finished run), status, predictions as JSON lines, cancel, list; and a run's items with
// their images (the dashboard's predictions browser).
import { Request, Response, Router } from 'express';
import { z } from 'zod';
import type { EvalRuns } from '../../benchmarks/runs';
import { imageExtension } from '../../benchmarks/loaders/common';
import { LEVEL_NAMES } from '../../benchmarks/spatial_synth';
import { BENCHMARKS } from '../../benchmarks/types';
import type { AppContext } from '../app';
import { HttpError } from '../errors';

export function evaluateSchema(maxNewTokens: number, defaultMaxNewTokens: number) {
  return z
    .object({
      benchmark: z.enum(BENCHMARKS),
      split: z.string().min(1).max(64).regex(/^[\w.+-]+$/, 'letters, digits, _ . + - only').optional(),
      subsets: z.array(z.string().min(1).max(64).regex(/^[\w.-]+$/, 'letters, digits, _ . - only')).max(32).optional(),
      limit: z.number().int().min(1).max(1_000_000).optional(),
      // spatial-synth's generator level (docs/spatial-synth.md "Levels"); standard when absent.
      level: z.enum(LEVEL_NAMES).optional(),
      template: z.enum(['r1', 'direct', 'instruct']).default('r1'),
      strategy: z.enum(['r1', 'strict']).default('r1'),
      max_new_tokens: z.number().int().min(1).max(maxNewTokens).default(defaultMaxNewTokens),
      model: z.string().min(1).max(200).optional(),
    })
    .strict()
    .superRefine((body, ctx) => {
      if (body.level !== undefined && body.benchmark !== 'spatial-synth') {
        ctx.addIssue({ code: 'custom', path: ['level'], message: `applies to spatial-synth only, not to ${body.benchmark}` });
      }
    });
}

function runs(ctx: AppContext): EvalRuns {
  if (!ctx.runs) throw new HttpError(503, 'evaluation_unavailable', 'evaluation runs are not enabled on this server', 5);
  return ctx.runs;
}

function found<T>(value: T | undefined, id: string): T {
  if (value === undefined) throw new HttpError(404, 'run_not_found', `no evaluation run ${id}`);
  return value;
}

async function runItem(ctx: AppContext, req: Request) {
  const id = String(req.params.id);
  const itemId = String(req.params.item);
  found(runs(ctx).get(id), id);
  const item = await runs(ctx).item(id, itemId);
  if (!item) throw new HttpError(404, 'item_not_found', `run ${id} has no item ${JSON.stringify(itemId.slice(0, 200))}`);
  return { id, itemId, item };
}

/** Media types of the image formats the dashboard's browsers display, by file extension. */
const MEDIA_TYPES: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif' };

/** The media type of encoded image bytes by their signature (the loaders' own check). */
export function imageType(bytes: Buffer): string {
  return MEDIA_TYPES[imageExtension(bytes) ?? ''] ?? 'application/octet-stream';
}

export function evaluateRouter(ctx: AppContext): Router {
  const schema = evaluateSchema(ctx.config.maxNewTokens, ctx.config.defaultMaxNewTokens);
  const router = Router();

  router.post('/evaluate', async (req: Request, res: Response) => {
    if (!req.is('application/json')) throw new HttpError(415, 'unsupported_content_type', 'send application/json');
    const body = schema.parse(req.body);
    if (body.model && !ctx.engine.listModels().some((m) => m.name === body.model)) {
      throw new HttpError(404, 'model_not_found', `no model named "${body.model}"; see GET /v1/models`);
    }
    const run = await runs(ctx).create({
      benchmark: body.benchmark,
      split: body.split,
      subsets: body.subsets,
      limit: body.limit,
      // Stored with every spatial-synth run, so that its params and result say which level it scored.
      ...(body.benchmark === 'spatial-synth' ? { level: body.level ?? 'standard' } : {}),
      template: body.template,
      strategy: body.strategy,
      maxNewTokens: body.max_new_tokens,
      model: body.model ?? ctx.config.defaultModel,
    });
    if (req.query.wait === 'true' || req.query.wait === '1') {
      res.json(await runs(ctx).wait(run.id));
      return;
    }
    res.status(202).location(`/evaluate/${run.id}`).json({ id: run.id, status: run.status });
  });

  router.get('/evaluate', (_req: Request, res: Response) => {
    res.json({ object: 'list', data: runs(ctx).list() });
  });

  router.get('/evaluate/:id', (req: Request, res: Response) => {
    res.json(found(runs(ctx).get(String(req.params.id)), String(req.params.id)));
  });

  router.get('/evaluate/:id/predictions', (req: Request, res: Response) => {
    const id = String(req.params.id);
    found(runs(ctx).get(id), id);
    res.setHeader('Content-Type', 'application/x-ndjson; charset=utf-8');
    for (const p of runs(ctx).predictions(id)) {
      res.write(
        `${JSON.stringify({
          id: p.item_id,
          task: p.task,
          source: p.source,
          gold: p.gold,
          gold_text: p.gold_text,
          prediction: p.prediction,
          extracted: p.extracted,
          correct: p.correct === 1,
          format_ok: p.format_ok === 1,
        })}\n`,
      );
    }
    res.end();
  });

  // One item of the run's split: what the predictions lines leave out (question, choices, images).
  // The item id is URL-encoded in the path (ids hold slashes: "spatial-synth/test/000123").
  router.get('/evaluate/:id/items/:item', async (req: Request, res: Response) => {
    const { id, itemId, item } = await runItem(ctx, req);
    const { record } = item;
    res.json({
      id: record.id,
      task: record.task,
      source: record.source,
      question: record.question,
      prompt: record.prompt,
      choices: record.choices,
      answer: record.answer,
      answer_text: record.answer_text,
      images: record.images.map((_path, n) => `/evaluate/${encodeURIComponent(id)}/items/${encodeURIComponent(itemId)}/images/${n}`),
    });
  });

  // The n-th image of an item, as its encoded bytes. Only the files the run's own items name can
  // be reached, and those are confined to their data set folder by the loaders.
  router.get('/evaluate/:id/items/:item/images/:n', async (req: Request, res: Response) => {
    const nText = String(req.params.n);
    if (!/^\d{1,3}$/.test(nText)) throw new HttpError(400, 'invalid_request', 'the image number is a non-negative integer');
    const n = Number(nText);
    const { itemId, item } = await runItem(ctx, req);
    if (n >= item.record.images.length) throw new HttpError(404, 'image_not_found', `item ${itemId} has ${item.record.images.length} image(s)`);
    const bytes = (await item.loadImages())[n];
    res.setHeader('Content-Type', imageType(bytes));
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'private, max-age=3600');
    res.send(bytes);
  });

  router.post('/evaluate/:id/cancel', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    res.json(found(await runs(ctx).cancel(id), id));
  });

  return router;
}
