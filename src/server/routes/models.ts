// GET /v1/models: every model folder under the model roots, by folder name, and the remote models
// (REMOTE_MODELS) by their configured name (docs/api.md, "GET /v1/models").
import { statSync } from 'node:fs';
import { Request, Response, Router } from 'express';
import type { AppContext } from '../app';

export function modelsRouter(ctx: AppContext): Router {
  const router = Router();
  const started = Math.floor(Date.now() / 1000);
  router.get('/v1/models', (_req: Request, res: Response) => {
    const data = ctx.engine.listModels().map((m) => ({
      id: m.name,
      object: 'model',
      created: m.remote ? started : Math.floor(statSync(m.dir).mtimeMs / 1000),
      owned_by: 'visualthinker',
      loaded: m.loaded,
      default: m.name === ctx.config.defaultModel,
      ...(m.remote ? { remote: true } : {}),
    }));
    res.json({ object: 'list', data });
  });
  return router;
}
