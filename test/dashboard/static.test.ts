// The dashboard's files as the service serves them: the page and every asset it loads (followed
// from the HTML's links and scripts and the modules' imports) come with their content types and a
// Content-Security-Policy that allows this origin only; no file names an external URL; nothing
// outside the two asset folders can be reached; the page's reflection rule is the shared one.
import request from 'supertest';
import { REFLECTION_PATTERN, REFLECTION_WORDS } from '../../src/engine/rewards';
import { createApp } from '../../src/server/app';
import { DASHBOARD_CSP } from '../../src/server/dashboard';
import { Engine } from '../../src/engine/engine';
import { JOB_STATUSES } from '../../src/training/store';
import { engineFor, testConfig } from '../helpers/service';

type App = ReturnType<typeof createApp>['app'];

interface Served {
  path: string;
  type: string;
  csp: string | undefined;
  body: string;
}

/** Local URLs the page refers to: <link href>, <script src>, <img src> (data: URLs aside). */
function htmlReferences(html: string): string[] {
  return [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1]).filter((url) => !url.startsWith('#') && !url.startsWith('data:'));
}

/** Module specifiers of `import ... from '...'` and `import('...')`. */
function moduleImports(js: string): string[] {
  return [...js.matchAll(/\bimport\s+(?:[^'"`;]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2]);
}

/** The page and everything it loads, fetched through the app. */
async function crawl(app: App): Promise<Served[]> {
  const served: Served[] = [];
  const seen = new Set<string>();
  const queue = ['/dashboard'];
  while (queue.length) {
    const path = queue.shift()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const res = await request(app).get(path).buffer(true).parse((r, done) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (chunk: string) => (text += chunk));
      r.on('end', () => done(null, text));
    });
    expect({ path, status: res.status }).toEqual({ path, status: 200 });
    const body = res.body as string;
    served.push({ path, type: res.headers['content-type'], csp: res.headers['content-security-policy'], body });
    const base = new URL(path, 'http://service.invalid');
    const refs = res.headers['content-type'].startsWith('text/html') ? htmlReferences(body) : /javascript/.test(res.headers['content-type']) ? moduleImports(body) : [];
    for (const ref of refs) {
      const url = new URL(ref, base);
      expect({ path, ref, origin: url.origin }).toEqual({ path, ref, origin: 'http://service.invalid' });
      queue.push(url.pathname);
    }
  }
  return served;
}

describe('dashboard files', () => {
  let engine: Engine;
  let app: App;
  let served: Served[];

  beforeAll(async () => {
    const config = testConfig();
    engine = engineFor(config);
    ({ app } = createApp({ config, engine, state: { draining: false, warmed: true } }));
    served = await crawl(app);
  });
  afterAll(async () => {
    await engine.dispose();
  });

  test('GET /dashboard is the page, with a CSP that allows this origin only', async () => {
    const res = await request(app).get('/dashboard').expect(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.text).toContain('<title>VisualThinker dashboard</title>');
    const csp = res.headers['content-security-policy'];
    expect(csp).toBe(DASHBOARD_CSP);
    const directives = Object.fromEntries(csp.split(';').map((d: string) => d.trim().split(/\s+/)).map(([name, ...values]: string[]) => [name, values]));
    expect(directives['default-src']).toEqual(["'self'"]);
    expect(directives['script-src']).toEqual(["'self'"]);
    expect(directives['connect-src']).toEqual(["'self'"]);
    expect(directives['frame-ancestors']).toEqual(["'none'"]);
    // No source anywhere in the policy is another origin, a wildcard or inline code.
    for (const values of Object.values(directives) as string[][]) {
      for (const value of values) expect(["'self'", "'none'", 'blob:', 'data:']).toContain(value);
    }
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('DENY');
    // "/dashboard/" is the same page.
    const slash = await request(app).get('/dashboard/').expect(200);
    expect(slash.text).toBe(res.text);
  });

  test('every asset the page loads is served with its content type and the CSP', () => {
    const paths = served.map((s) => s.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/dashboard',
        '/dashboard/style.css',
        '/dashboard/vendor/uplot/uPlot.min.css',
        '/dashboard/vendor/uplot/uPlot.iife.min.js',
        '/dashboard/js/app.js',
        '/dashboard/js/api.js',
        '/dashboard/js/training.js',
        '/dashboard/js/evaluation.js',
        '/dashboard/js/try.js',
        '/dashboard/js/charts.js',
        '/dashboard/js/completion.js',
      ]),
    );
    for (const file of served) {
      const expected = file.path.endsWith('.css') ? /^text\/css; charset=utf-8$/ : file.path.endsWith('.js') ? /^(?:text|application)\/javascript; charset=utf-8$/ : /^text\/html; charset=utf-8$/;
      expect({ path: file.path, type: file.type }).toEqual({ path: file.path, type: expect.stringMatching(expected) });
      expect({ path: file.path, csp: file.csp }).toEqual({ path: file.path, csp: DASHBOARD_CSP });
    }
  });

  test('no served file refers to an external origin', () => {
    for (const file of served) {
      // Comments are not requests (uPlot's licence banner names its repository).
      const code = file.body.replace(/\/\*[\s\S]*?\*\//g, '').replace(/<!--[\s\S]*?-->/g, '');
      const external = code.match(/\b(?:https?|wss?|ftp):\/\/[^\s'"`)<>]*/gi) ?? [];
      expect({ path: file.path, external }).toEqual({ path: file.path, external: [] });
      // Protocol-relative references in markup, CSS url() and @import.
      expect({ path: file.path, refs: code.match(/(?:src|href)\s*=\s*["']\/\/[^"']*/gi) ?? [] }).toEqual({ path: file.path, refs: [] });
      if (file.path.endsWith('.css')) {
        const urls = [...code.matchAll(/url\(\s*['"]?([^'")]*)/g)].map((m) => m[1]).filter((url) => !url.startsWith('data:') && !/^(?:\/(?!\/)|\.)/.test(url));
        expect({ path: file.path, urls }).toEqual({ path: file.path, urls: [] });
        expect({ path: file.path, imports: code.match(/@import/gi) ?? [] }).toEqual({ path: file.path, imports: [] });
      }
    }
    // Module imports are relative, so they stay on this origin.
    for (const file of served.filter((f) => f.path.startsWith('/dashboard/js/'))) {
      for (const specifier of moduleImports(file.body)) expect({ file: file.path, specifier }).toEqual({ file: file.path, specifier: expect.stringMatching(/^\.\//) });
    }
  });

  test('the page holds no inline script or style, and no token', () => {
    const html = served.find((f) => f.path === '/dashboard')!.body;
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    for (const file of served) expect(file.body).not.toMatch(/Bearer [A-Za-z0-9]/);
  });

  test('every training job status has a badge style; preparing its own', () => {
    const css = served.find((f) => f.path === '/dashboard/style.css')!.body;
    const rules = [...css.matchAll(/^([^{}\n]*\.badge-[^{}\n]*)\{/gm)].map((m) => m[1].split(',').map((s) => s.trim()));
    for (const status of JOB_STATUSES) expect({ status, styled: rules.some((selectors) => selectors.includes(`.badge-${status}`)) }).toEqual({ status, styled: true });
    // Not shared with queued and running: a job that is generating its data set looks different.
    expect(rules.filter((selectors) => selectors.includes('.badge-preparing'))).toEqual([['.badge-preparing']]);
  });

  test('rules.json carries the shared reflection rule', async () => {
    const res = await request(app).get('/dashboard/rules.json').expect(200);
    expect(res.headers['content-security-policy']).toBe(DASHBOARD_CSP);
    expect(res.body).toEqual({ reflection_words: [...REFLECTION_WORDS], reflection_pattern: REFLECTION_PATTERN.source, reflection_flags: 'gi' });
    const pattern = new RegExp(res.body.reflection_pattern, res.body.reflection_flags);
    expect('Wait, let me re-check.'.match(pattern)).toEqual(['Wait', 're-check']);
  });

  test('static files are counted under one route label', async () => {
    const metrics = await request(app).get('/metrics').expect(200);
    expect(metrics.text).toMatch(/vlm_requests_total\{route="\/dashboard\/\*",status="200"\} \d+/);
    expect(metrics.text).toMatch(/vlm_requests_total\{route="\/dashboard",status="200"\} \d+/);
  });

  test.each([
    '/dashboard/nope.js',
    '/dashboard/%2e%2e/dashboard.ts',
    '/dashboard/js/%2e%2e/%2e%2e/dashboard.ts',
    '/dashboard/vendor/uplot/%2e%2e/package.json',
    '/dashboard/vendor/uplot/..%2fpackage.json',
    '/dashboard/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
    '/dashboard/.hidden',
  ])('%s is not found', async (path) => {
    const res = await request(app).get(path);
    expect(res.status).toBe(404);
    expect(res.text).not.toContain('"name": "visualthinker-service"');
    expect(res.text).not.toContain('dashboardRouter');
  });
});
