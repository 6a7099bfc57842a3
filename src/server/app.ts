// Builds the HTTP app (no port opened here: tests use it directly; main.ts owns the process).
import { randomUUID } from 'node:crypto';
import express, { NextFunction, Request, Response } from 'express';
import pino, { Logger } from 'pino';
import type { Config } from '../config';
import type { EvalRuns } from '../benchmarks/runs';
import type { Engine } from '../engine/engine';
import type { JobManager } from '../training/manager';
import { ServiceError } from '../errors';
import { sendError, toServiceError } from './errors';
import { dashboardRouter } from './dashboard';
import { ServiceMetrics } from './metrics';
import { adminRouter } from './routes/admin';
import { chatRouter } from './routes/chat';
import { evaluateRouter } from './routes/evaluate';
import { generateRouter } from './routes/generate';
import { healthRouter } from './routes/health';
import { modelsRouter } from './routes/models';

export interface AppState {
  /** Set on SIGTERM: /readyz answers 503 so load balancers stop sending traffic. */
  draining: boolean;
  /** Set once the default model is loaded (WARMUP) or at once without WARMUP. */
  warmed: boolean;
}

export interface AppContext {
  config: Config;
  engine: Engine;
  /** Evaluation runs (absent: the evaluate routes answer 503). */
  runs?: EvalRuns;
  /** Training jobs (absent: the training routes answer 503). */
  jobs?: JobManager;
  metrics: ServiceMetrics;
  logger: Logger;
  state: AppState;
  logError(req: Request, error: unknown, http: ServiceError): void;
}

export interface CreateAppOptions {
  config: Config;
  engine: Engine;
  runs?: EvalRuns;
  jobs?: JobManager;
  logger?: Logger;
  state?: AppState;
}

declare module 'express-serve-static-core' {
  interface Request {
    id?: string;
  }
}

export function createApp(options: CreateAppOptions) {
  const metrics = new ServiceMetrics();
  const logger = options.logger ?? pino({ level: options.config.logLevel });
  const state = options.state ?? { draining: false, warmed: false };
  const unobserve = options.engine.observe(metrics.engineObserver());
  const unfollowRuns = options.runs?.onItem((benchmark) => metrics.evalItems.inc({ benchmark }));
  const unfollowJobs = options.jobs && metrics.followTraining(options.jobs);
  const ctx: AppContext = {
    config: options.config,
    engine: options.engine,
    runs: options.runs,
    jobs: options.jobs,
    metrics,
    logger,
    state,
    logError(req, error, http) {
      // Bodies, images and tokens are never logged: the request id, route and error only.
      const fields = { reqId: req.id, method: req.method, path: req.path, status: http.status, code: http.code };
      if (http.status >= 500) logger.error({ ...fields, err: error }, 'request failed');
      else logger.info(fields, 'request rejected');
    },
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req: Request, res: Response, next: NextFunction) => {
    const given = req.get('x-request-id');
    req.id = given && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', req.id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = routeLabel(req);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ route, status: String(res.statusCode) });
      metrics.requestDuration.observe({ route }, seconds);
      if (route !== '/healthz' && route !== '/readyz' && route !== '/metrics') {
        logger.info({ reqId: req.id, method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
      }
    });
    next();
  });

  // Base64 images ride in JSON bodies: allow the image limit plus its base64 growth and the text.
  const jsonLimit = Math.ceil((options.config.maxImageBytes * 4) / 3) + 1024 * 1024;
  app.use(express.json({ limit: jsonLimit, type: ['application/json', 'application/*+json'] }));

  app.use(healthRouter(ctx));
  app.use(modelsRouter(ctx));
  app.use(generateRouter(ctx));
  app.use(chatRouter(ctx));
  app.use(evaluateRouter(ctx));
  app.use(adminRouter(ctx));
  app.use(dashboardRouter());

  app.use((req: Request, _res: Response, next: NextFunction) => {
    next(new ServiceError(404, 'not_found', `no route ${req.method} ${req.path}`));
  });
  // Express recognises error handlers by their four parameters.
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    void _next;
    const http = toServiceError(error);
    if (http.status === 499) {
      // The client went away; nobody is listening for a response.
      res.destroy();
      return;
    }
    ctx.logError(req, error, http);
    sendError(res, http);
  });

  return {
    app,
    ctx,
    dispose: () => {
      unobserve();
      unfollowRuns?.();
      unfollowJobs?.();
    },
  };
}

/** The matched route pattern (never the raw URL, which would explode the label set). */
function routeLabel(req: Request): string {
  const route = (req as Request & { route?: { path?: string } }).route?.path;
  if (typeof route === 'string') return route;
  // The dashboard's static files are served by middleware, not routes: one label for them all.
  return req.originalUrl === '/dashboard' || req.originalUrl.startsWith('/dashboard/') ? '/dashboard/*' : 'unmatched';
}
