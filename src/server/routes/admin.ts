// Admin routes (docs/api.md, "Admin: training jobs and models"), all behind the admin token: training jobs (create,
// list, status, per-step metrics as server-sent events or JSON lines, cancel) and loading a
// model folder (an exported job's model, for instance) into the engine without generating. Also the sampled rollouts
// of a step (rollouts.jsonl), which the dashboard shows beside the curves.
import { Request, Response, Router } from 'express';
import { JobFolder } from '../../training/job_folder';
import type { JobManager, JobView } from '../../training/manager';
import { readRollouts } from '../../training/rollouts';
import { StepMetrics, TERMINAL } from '../../training/store';
import type { AppContext } from '../app';
import { adminAuth } from '../auth';
import { ServiceError } from '../../errors';
import { rolloutsQuery, trainSchema } from '../schemas';
import { openSse } from '../sse';

function jobs(ctx: AppContext): JobManager {
  if (!ctx.jobs) throw new ServiceError(503, 'training_unavailable', 'training jobs are not enabled on this server', 5);
  return ctx.jobs;
}

function found<T>(value: T | undefined, id: string): T {
  if (value === undefined) throw new ServiceError(404, 'job_not_found', `no training job ${id}`);
  return value;
}

const wantsWait = (req: Request) => req.query.wait === 'true' || req.query.wait === '1';

export function adminRouter(ctx: AppContext): Router {
  const router = Router();
  router.use('/admin', adminAuth(ctx.config.adminToken));

  router.post('/admin/train', (req: Request, res: Response) => {
    if (!req.is('application/json')) throw new ServiceError(415, 'unsupported_content_type', 'send application/json');
    const body = trainSchema.parse(req.body ?? {});
    const job = jobs(ctx).create(body);
    res.status(202).location(`/admin/train/${job.id}`).json({ id: job.id, status: job.status });
  });

  router.get('/admin/train', (_req: Request, res: Response) => {
    res.json({ object: 'list', data: jobs(ctx).list() });
  });

  router.get('/admin/train/:id', (req: Request, res: Response) => {
    const id = String(req.params.id);
    res.json(found(jobs(ctx).get(id), id));
  });

  // Every stored step first, then live ones, then `done` with the job's final status. Reading
  // the stored steps and subscribing happen in one synchronous stretch: no step is missed or
  // sent twice between the two. SSE also carries `status` events while the job is not finished
  // ({"status", "preparing"}: the status at the start, each change, a preparing job's progress);
  // JSON lines keep to metrics lines and the final line.
  router.get('/admin/train/:id/events', (req: Request, res: Response) => {
    const manager = jobs(ctx);
    const id = String(req.params.id);
    found(manager.get(id), id);
    const format = req.query.format ?? 'sse';
    if (format !== 'sse' && format !== 'jsonl') throw new ServiceError(400, 'invalid_request', 'format: "sse" (default) or "jsonl"');
    let send: (metrics: StepMetrics) => void;
    let done: (job: JobView | undefined) => void;
    let status: (job: Pick<JobView, 'status' | 'preparing'>) => void = () => undefined;
    if (format === 'jsonl') {
      res.status(200).setHeader('Content-Type', 'application/x-ndjson; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache');
      res.flushHeaders();
      send = (metrics) => res.write(`${JSON.stringify(metrics)}\n`);
      done = (job) => res.end(`${JSON.stringify({ event: 'done', status: job?.status, job })}\n`);
    } else {
      const sse = openSse(res);
      send = (metrics) => sse.send('metrics', metrics);
      status = (job) => sse.send('status', { status: job.status, preparing: job.preparing });
      done = (job) => {
        sse.send('done', { status: job?.status, job });
        sse.end();
      };
    }
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      unsubscribe();
      done(manager.get(id));
    };
    const unsubscribe = manager.onEvent((event) => {
      if (event.jobId !== id || finished) return;
      if (event.type === 'metrics') send(event.metrics);
      else if (event.type === 'preparing') status({ status: 'preparing', preparing: event.preparing });
      else if (TERMINAL.has(event.status)) finish();
      else status({ status: event.status, preparing: manager.get(id)?.preparing ?? null });
    });
    res.on('close', () => {
      finished = true;
      unsubscribe();
    });
    for (const metrics of manager.history(id)) send(metrics);
    const now = manager.get(id);
    if (!now || TERMINAL.has(now.status)) finish();
    else status(now);
  });

  // The sampled completions of one step (rollouts.jsonl), for the dashboard's rollouts panel.
  router.get('/admin/train/:id/rollouts', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    const job = found(jobs(ctx).get(id), id);
    const query = rolloutsQuery.parse(req.query);
    const page = await readRollouts(new JobFolder(job.job_dir).rolloutsFile, { step: query.step, limit: query.limit });
    res.json({ object: 'list', job_id: id, ...page });
  });

  router.post('/admin/train/:id/cancel', async (req: Request, res: Response) => {
    const manager = jobs(ctx);
    const id = String(req.params.id);
    const job = found(manager.cancel(id), id);
    res.json(wantsWait(req) ? await manager.wait(id) : job);
  });

  router.post('/admin/models/:name/load', async (req: Request, res: Response) => {
    const name = String(req.params.name);
    if (!ctx.engine.listModels().some((m) => m.name === name)) throw new ServiceError(404, 'model_not_found', `no model folder "${name}" under the model roots; see GET /v1/models`);
    const started = Date.now();
    const loaded = await ctx.engine.load(name);
    res.json({ id: name, object: 'model', loaded: loaded.loaded, load_ms: Date.now() - started });
  });

  return router;
}
