// Evaluation runs over HTTP (api.md "POST /evaluate"): create (202 + Location, or ?wait=true for
// the finished run), status, predictions as JSON lines, cancel, list.
import { Request, Response, Router } from 'express';
import { z } from 'zod';
import type { EvalRuns } from '../../benchmarks/runs';
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
      template: z.enum(['r1', 'direct', 'instruct']).default('r1'),
      strategy: z.enum(['r1', 'strict']).default('r1'),
      max_new_tokens: z.number().int().min(1).max(maxNewTokens).default(defaultMaxNewTokens),
      model: z.string().min(1).max(200).optional(),
    })
    .strict();
}

function runs(ctx: AppContext): EvalRuns {
  if (!ctx.runs) throw new HttpError(503, 'evaluation_unavailable', 'evaluation runs are not enabled on this server', 5);
  return ctx.runs;
}

function found<T>(value: T | undefined, id: string): T {
  if (value === undefined) throw new HttpError(404, 'run_not_found', `no evaluation run ${id}`);
  return value;
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

  router.post('/evaluate/:id/cancel', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    res.json(found(await runs(ctx).cancel(id), id));
  });

  return router;
}
