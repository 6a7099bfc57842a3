// Evaluation runs over HTTP (docs/api.md, "Evaluation"): create (202 + Location, or ?wait=true for
// the finished run), create from uploaded predictions, status, predictions as JSON lines, cancel,
// list; and a run's items with their images (the dashboard's predictions browser).
import express, { NextFunction, Request, Response, Router } from 'express';
import { MAX_SAMPLES, type EvalRuns } from '../../benchmarks/runs';
import { imageExtension } from '../../benchmarks/loaders/common';
import { MAX_PREDICTION_CHARS, parsePredictionLines } from '../../benchmarks/uploads';
import type { AppContext } from '../app';
import { ServiceError } from '../../errors';
import { evaluateSchema, uploadQuerySchema } from '../schemas';

/** Largest upload of predictions (the body of POST /evaluate/predictions). */
export const MAX_PREDICTIONS_BYTES = 64 * 1024 * 1024;

const UPLOAD_TYPES = ['application/x-ndjson', 'application/jsonl', 'application/json-lines'];
const readUpload = express.text({ type: () => true, limit: MAX_PREDICTIONS_BYTES });

/** The upload's text; an oversized body is a 413 that says the limit. */
function uploadText(req: Request, res: Response): Promise<string> {
  return new Promise((resolve, reject) => {
    readUpload(req, res, ((error?: { type?: string }) => {
      if (error?.type === 'entity.too.large') {
        reject(new ServiceError(413, 'predictions_too_large', `the upload is larger than ${MAX_PREDICTIONS_BYTES / 1024 / 1024} MiB; split the benchmark with limit or subsets`));
      } else if (error) reject(error);
      else resolve(typeof req.body === 'string' ? req.body : '');
    }) as NextFunction);
  });
}

function runs(ctx: AppContext): EvalRuns {
  if (!ctx.runs) throw new ServiceError(503, 'evaluation_unavailable', 'evaluation runs are not enabled on this server', 5);
  return ctx.runs;
}

function found<T>(value: T | undefined, id: string): T {
  if (value === undefined) throw new ServiceError(404, 'run_not_found', `no evaluation run ${id}`);
  return value;
}

async function runItem(ctx: AppContext, req: Request) {
  const id = String(req.params.id);
  const itemId = String(req.params.item);
  found(runs(ctx).get(id), id);
  const item = await runs(ctx).item(id, itemId);
  if (!item) throw new ServiceError(404, 'item_not_found', `run ${id} has no item ${JSON.stringify(itemId.slice(0, 200))}`);
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
    if (!req.is('application/json')) throw new ServiceError(415, 'unsupported_content_type', 'send application/json');
    const body = schema.parse(req.body);
    if (body.model && !ctx.engine.listModels().some((m) => m.name === body.model)) {
      throw new ServiceError(404, 'model_not_found', `no model named "${body.model}"; see GET /v1/models`);
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
      samples: body.samples,
      ...(body.temperature === undefined ? {} : { temperature: body.temperature }),
      ...(body.top_p === undefined ? {} : { topP: body.top_p }),
      ...(body.seed === undefined ? {} : { seed: body.seed }),
    });
    if (req.query.wait === 'true' || req.query.wait === '1') {
      res.json(await runs(ctx).wait(run.id));
      return;
    }
    res.status(202).location(`/evaluate/${run.id}`).json({ id: run.id, status: run.status });
  });

  // A finished run from responses generated elsewhere: JSON lines in the body, the run's settings
  // in the query string. Checked whole before anything is stored (docs/api.md).
  router.post('/evaluate/predictions', async (req: Request, res: Response) => {
    runs(ctx);
    if (!req.is(UPLOAD_TYPES)) throw new ServiceError(415, 'unsupported_content_type', `send the predictions as JSON lines (${UPLOAD_TYPES.join(', ')})`);
    const query = uploadQuerySchema.parse(req.query);
    const uploaded = parsePredictionLines(await uploadText(req, res), { maxPredictionChars: MAX_PREDICTION_CHARS, maxSamples: MAX_SAMPLES });
    const run = await runs(ctx).importPredictions({
      origin: 'uploaded',
      benchmark: query.benchmark,
      split: query.split,
      subsets: query.subsets,
      limit: query.limit,
      level: query.level,
      template: query.template,
      strategy: query.strategy,
      model: query.model,
    }, uploaded);
    res.status(201).location(`/evaluate/${run.id}`).json(run);
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
          sample: p.sample,
          task: p.task,
          source: p.source,
          gold: p.gold,
          gold_text: p.gold_text,
          prediction: p.prediction,
          extracted: p.extracted,
          correct: p.correct === 1,
          format_ok: p.format_ok === 1,
          completion_tokens: p.completion_tokens,
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
    if (!/^\d{1,3}$/.test(nText)) throw new ServiceError(400, 'invalid_request', 'the image number is a non-negative integer');
    const n = Number(nText);
    const { itemId, item } = await runItem(ctx, req);
    if (n >= item.record.images.length) throw new ServiceError(404, 'image_not_found', `item ${itemId} has ${item.record.images.length} image(s)`);
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
