// Probes and metrics: /healthz while the process lives, /readyz once the default model is loaded
// (503 before and while draining), /metrics in Prometheus text format.
import { Request, Response, Router } from 'express';
import type { AppContext } from '../app';

export function healthRouter(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', (_req: Request, res: Response) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req: Request, res: Response) => {
    if (ctx.state.draining) {
      res.status(503).json({ status: 'draining' });
    } else if (!ctx.state.warmed || !ctx.engine.isReady()) {
      res.status(503).json({ status: 'loading', model: ctx.config.defaultModel });
    } else {
      res.json({ status: 'ready', model: ctx.config.defaultModel });
    }
  });
  router.get('/metrics', async (_req: Request, res: Response) => {
    res.setHeader('Content-Type', ctx.metrics.registry.contentType);
    res.send(await ctx.metrics.registry.metrics());
  });
  return router;
}
