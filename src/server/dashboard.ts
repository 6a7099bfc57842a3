// The web dashboard (docs/api.md, "Dashboard"): static pages from dashboard_static/ and uPlot's files from
// node_modules, all under /dashboard, each answered with a Content-Security-Policy that allows
// nothing outside this origin. The pages use the public API (and the admin API with a token the
// user types in); nothing here reads a job, a run or a secret.
import { dirname, join } from 'node:path';
import express, { NextFunction, Request, Response, Router } from 'express';
import { REFLECTION_PATTERN, REFLECTION_WORDS } from '../engine/rewards';

/** Beside this module: src/server/dashboard_static, or dist/server/dashboard_static (`npm run build` copies it). */
export const DASHBOARD_DIR = join(__dirname, 'dashboard_static');
/** uPlot's dist/ folder, wherever npm put the package. */
export const UPLOT_DIR = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));

/**
 * Only this origin: scripts and styles from files (no inline code), images from the service or
 * chosen by the user (blob: previews of an upload), requests to the service only.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function securityHeaders(_req: Request, res: Response, next: NextFunction) {
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  // Small files: always revalidated, so a new version of the service is picked up at once.
  res.setHeader('Cache-Control', 'no-cache');
  next();
}

/** The shared rules the pages apply client-side (src/engine/rewards.ts): reflection words. */
export function dashboardRules() {
  return { reflection_words: REFLECTION_WORDS, reflection_pattern: REFLECTION_PATTERN.source, reflection_flags: 'gi' };
}

export function dashboardRouter(): Router {
  const router = Router();
  const statics = { index: false, redirect: false, dotfiles: 'ignore' as const, etag: true, lastModified: true, fallthrough: true };
  router.use('/dashboard', securityHeaders);
  const page = (_req: Request, res: Response) => res.type('html').sendFile(join(DASHBOARD_DIR, 'index.html'));
  // Non-strict routing: "/dashboard" and "/dashboard/" alike.
  router.get('/dashboard', page);
  router.get('/dashboard/rules.json', (_req: Request, res: Response) => {
    res.json(dashboardRules());
  });
  router.use('/dashboard/vendor/uplot', express.static(UPLOT_DIR, statics));
  router.use('/dashboard', express.static(DASHBOARD_DIR, statics));
  return router;
}
