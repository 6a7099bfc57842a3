// The dashboard end to end in headless Chromium (Debian's chromium, driven by playwright-core):
// a real server on a free port with the tiny model, a real training job (the fake trainer, which
// writes metrics and rollouts) and two real evaluation runs. Each view is loaded and checked for
// data: the curves hold the job's points and take a new step live from the events stream, the
// rollouts are highlighted, the bars cover the runs' tasks, the predictions (with images) are
// listed and filtered, Try it streams an answer, and Cancel stops the job; a job waiting for the
// trainer's environment (a stand-in the test controls) shows `preparing`, what is being made, and
// then `running`. The page may request
// nothing outside the service and may log no error (a CSP violation would be one). Screenshots go
// to test-output/dashboard/.
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, BrowserContext, chromium, Page } from 'playwright-core';
import request from 'supertest';
import type { TrainerBackend, TrainerEnvironment } from '../../src/training/backend';
import { JobManager } from '../../src/training/manager';
import { startTestService, TestService } from '../helpers/app';
import { vectorPng } from '../helpers/service';
import { fakeBackend, until } from '../helpers/training';
import { REPO_ROOT } from '../helpers/vectors';

// Callbacks run in the page; the project compiles without the DOM library.
declare const document: { querySelectorAll(selector: string): ArrayLike<{ complete?: boolean; naturalWidth?: number }> };
declare const location: { hash: string };
declare const sessionStorage: Record<string, string>;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OUT = join(REPO_ROOT, 'test-output', 'dashboard');
const TOKEN = 'dashboard-e2e-token-7d21f0';
const auth = { Authorization: `Bearer ${TOKEN}` };
/** Steps the fake trainer makes before it hangs (until cancelled). */
const STEPS_BEFORE_HANG = 4;

/** The trainer's environment as the test makes it: needed when the test says, made when it says. */
const setup: { needed: boolean; say: (line: string) => void; finish: () => void } = { needed: false, say: () => undefined, finish: () => undefined };
const environment: TrainerEnvironment = {
  description: 'the test environment',
  needed: () => setup.needed,
  make: (log) =>
    new Promise<void>((resolve) => {
      setup.say = log;
      log('Collecting torch');
      setup.finish = () => {
        setup.needed = false;
        resolve();
      };
    }),
};

interface Prediction {
  id: string;
  correct: boolean;
  format_ok: boolean;
}

describe('dashboard in a browser', () => {
  let service: TestService | undefined;
  let jobs: JobManager;
  let app: TestService['app'];
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let jobId: string;
  const runIds: string[] = [];
  const outside: string[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: npm test installs Debian's chromium (scripts/setup.sh); or run apt-get install chromium, or set CHROMIUM_PATH`);
    }
    mkdirSync(OUT, { recursive: true });
    service = await startTestService({
      adminToken: TOKEN,
      env: { MAX_NEW_TOKENS: '64' },
      runs: { concurrency: 8 },
      jobs: () => {
        const fake = fakeBackend({ FAKE_TRAINER: 'hang', FAKE_HANG_AFTER: String(STEPS_BEFORE_HANG), FAKE_ROLLOUTS: '3', FAKE_STEP_MS: '10' });
        const backend: TrainerBackend = { name: fake.name, environment, start: (spec) => fake.start(spec), attach: (spec, ref) => fake.attach(spec, ref) };
        return { backend, maxConcurrent: 2 };
      },
      listen: true,
    });
    ({ jobs, app } = service);
    base = service.base!;

    const [job, runA, runB, launched] = await Promise.all([
      request(app).post('/admin/train').set(auth).send({ steps: 10 }).expect(202),
      request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 6, max_new_tokens: 8 }).expect(200),
      request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 6, max_new_tokens: 8, template: 'direct' }).expect(200),
      chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }),
    ]);
    browser = launched;
    jobId = job.body.id;
    runIds.push(runA.body.id, runB.body.id);
    await until(() => jobs.get(jobId)?.progress.step === STEPS_BEFORE_HANG, 20_000, 'the fake trainer to make its steps');

    context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    // Anything not for the service is refused and remembered.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(`${base}/`) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      outside.push(url);
      return route.abort();
    });
    page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await service?.dispose();
  });

  afterEach(() => {
    expect(outside).toEqual([]);
    expect(problems).toEqual([]);
  });

  test('evaluation: runs, task bars beside the other run, format rates, predictions with images and filters', async () => {
    const [runA, runB] = await Promise.all(runIds.map(async (id) => (await request(app).get(`/evaluate/${id}`).expect(200)).body));
    const predictions: Prediction[] = (await request(app).get(`/evaluate/${runA.id}/predictions`).expect(200)).text.trim().split('\n').map((l) => JSON.parse(l));
    const tasks = Object.keys(runA.result.by_task).sort();

    await page.goto(`${base}/dashboard#evaluation/${runA.id}`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.waitForSelector(`#run-list tr[data-id="${runB.id}"]`);
    // One bar per run for "overall" and each task; the other run of the benchmark is beside this one.
    await page.waitForFunction((count) => document.querySelectorAll('#task-bars .bar').length === count, 2 * (tasks.length + 1));
    const groups = await page.$$eval('#task-bars .bar-group', (nodes) => nodes.map((n) => n.getAttribute('data-group')));
    expect(groups).toEqual(['overall', ...tasks]);
    const legend = await page.textContent('#task-bars .bar-legend');
    expect(legend).toContain(runA.id.slice(0, 13));
    expect(legend).toContain(runB.id.slice(0, 13));
    expect(await page.$$eval('#format-bars .bar', (n) => n.length)).toBe(2);
    const accuracy = await page.textContent('#run-stats');
    expect(accuracy).toContain(`${(runA.result.format_rate * 100).toFixed(1)}%`);

    // Every prediction is listed, with its question and image from the run's item.
    await page.waitForFunction((n) => document.querySelectorAll('#predictions tr.prediction').length === n, predictions.length);
    expect(await page.$$eval('#predictions tr.prediction', (rows) => rows.map((r) => r.getAttribute('data-item')))).toEqual(predictions.map((p) => p.id));
    await page.waitForFunction(
      (n) => Array.from(document.querySelectorAll('#predictions img')).filter((img) => img.complete && img.naturalWidth! > 0).length === n,
      predictions.length,
    );
    await page.waitForFunction(() => document.querySelectorAll('#predictions ol.choices').length > 0);
    expect(await page.$$eval('#task-table tbody tr', (rows) => rows.length)).toBe(tasks.length);
    await page.screenshot({ path: join(OUT, 'evaluation.png'), fullPage: true });

    const shown = async (filter: string) => {
      await page.check(`input[name="pred-filter"][value="${filter}"]`);
      return page.$$eval('#predictions tr.prediction', (rows) => rows.map((r) => r.getAttribute('data-item')));
    };
    expect(await shown('wrong')).toEqual(predictions.filter((p) => !p.correct).map((p) => p.id));
    expect(await shown('format')).toEqual(predictions.filter((p) => !p.format_ok).map((p) => p.id));
    expect(await shown('either')).toEqual(predictions.filter((p) => !p.correct || !p.format_ok).map((p) => p.id));
    expect(await shown('all')).toEqual(predictions.map((p) => p.id));
  });

  test('evaluation with samples: pass@k curves of the runs side by side, statistics beside accuracy, every sample browsable, a run scored from an uploaded file', async () => {
    const sampled = (await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 4, samples: 4, temperature: 1, seed: 2, max_new_tokens: 8 }).expect(200)).body;
    const exported = (await request(app).get(`/evaluate/${sampled.id}/predictions`).expect(200)).text;
    const tasks = Object.keys(sampled.result.by_task).sort();

    await page.goto(`${base}/dashboard#evaluation/${sampled.id}`);
    await page.waitForSelector('body[data-ready="true"]');
    // This run's curve beside the two single-sample runs of the benchmark: k = 1, 2, 4.
    await page.waitForSelector('#pass-chart[data-series="3"][data-points="3"] canvas');
    const stats = await page.textContent('#run-stats');
    expect(stats).toContain('pass@4');
    expect(stats).toContain(`${(sampled.result.pass_at_k['4'] * 100).toFixed(1)}%`);
    expect(stats).toContain('majority@4');
    expect(stats).toContain(`${(sampled.result.majority_accuracy * 100).toFixed(1)}%`);
    expect(stats).toContain(`${(sampled.result.stats.reflection_rate * 100).toFixed(1)}%`);
    expect(stats).toContain(`${(sampled.result.stats.off_option_rate * 100).toFixed(1)}%`);
    const rows = await page.$$eval('#task-table tbody tr', (nodes) => nodes.map((n) => n.textContent));
    expect(rows).toHaveLength(tasks.length);
    expect(rows[0]).toContain(`${(sampled.result.by_task[tasks[0]].pass_at_k['4'] * 100).toFixed(1)}% @4`);
    // All 16 responses are listed, each with its sample number.
    await page.waitForFunction(() => document.querySelectorAll('#predictions tr.prediction').length === 16);
    const samples = await page.$$eval('#predictions tr.prediction', (nodes) => nodes.map((n) => n.getAttribute('data-sample')));
    expect(samples).toEqual([0, 1, 2, 3].flatMap(() => ['0', '1', '2', '3']));
    await page.screenshot({ path: join(OUT, 'evaluation-samples.png'), fullPage: true });

    // The same responses uploaded as a file become a run of their own, with the same numbers.
    await page.click('#upload-run-box summary');
    await page.setInputFiles('#upload-run input[name="file"]', { name: 'answers.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(exported) });
    await page.fill('#upload-run input[name="limit"]', '4');
    await page.fill('#upload-run input[name="model"]', 'elsewhere');
    await page.click('#upload-run button[type="submit"]');
    await page.waitForFunction((id) => !location.hash.endsWith(id) && location.hash.startsWith('#evaluation/eval_'), sampled.id);
    const uploadedId = (await page.evaluate(() => location.hash)).slice('#evaluation/'.length);
    const uploaded = (await request(app).get(`/evaluate/${uploadedId}`).expect(200)).body;
    expect(uploaded).toMatchObject({ model: 'elsewhere', params: { origin: 'uploaded' } });
    expect(uploaded.result).toEqual(sampled.result);
    await page.waitForSelector('#pass-chart[data-series="4"] canvas');
    expect(await page.textContent('#run-meta')).toContain('scored from uploaded predictions');
  });

  test('training: the token unlocks the jobs; live curves, rollouts, and cancel', async () => {
    await page.goto(`${base}/dashboard#training`);
    await page.waitForSelector('body[data-ready="true"]');
    expect(await page.isVisible('#training-locked')).toBe(true);
    await page.fill('#admin-token', TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector(`#job-list tr[data-id="${jobId}"]`);
    // Kept in memory only: not in storage, not in the page.
    expect(await page.evaluate(() => JSON.stringify({ ...sessionStorage }))).not.toContain(TOKEN);
    expect(await page.content()).not.toContain(TOKEN);

    await page.click(`#job-list tr[data-id="${jobId}"]`);
    for (const chart of ['reward', 'length', 'reflection', 'kl']) {
      await page.waitForSelector(`#chart-${chart}[data-points="${STEPS_BEFORE_HANG}"] canvas`);
    }
    // The reward chart has the reward, accuracy and format series (uPlot's legend).
    const labels = await page.$$eval('#chart-reward .u-legend .u-series .u-label', (n) => n.map((e) => e.textContent));
    expect(labels).toEqual(['step', 'reward', 'accuracy', 'format']);
    expect(await page.textContent('#job-latest')).toContain(`latest step ${STEPS_BEFORE_HANG}: reward 0.4`);

    // Rollouts of the newest step: think and answer set apart, reflection words marked.
    await page.waitForSelector(`#rollouts[data-step="${STEPS_BEFORE_HANG}"] .rollout`);
    expect(await page.$$eval('#rollouts .rollout', (n) => n.length)).toBe(3);
    expect(await page.$$eval('#rollouts .seg-think', (n) => n.length)).toBeGreaterThan(0);
    expect(await page.$$eval('#rollouts .seg-answer', (n) => n.map((e) => e.textContent))).toEqual(expect.arrayContaining(['3']));
    expect(await page.$$eval('#rollouts mark.reflect', (n) => n.map((e) => e.textContent))).toEqual(expect.arrayContaining(['Wait', 'check']));

    // A step written while the page watches arrives through the events stream.
    const next = STEPS_BEFORE_HANG + 1;
    const line = { step: next, total_steps: 10, reward: 0.9, 'rewards/accuracy': 0.5, 'rewards/format': 0.4, completion_length: 150, kl: 0.02, reflection_rate: 0.3 };
    appendFileSync(join(jobs.get(jobId)!.job_dir, 'metrics.jsonl'), `${JSON.stringify(line)}\n`);
    for (const chart of ['reward', 'length', 'reflection', 'kl']) {
      await page.waitForSelector(`#chart-${chart}[data-points="${next}"][data-last-step="${next}"]`);
    }
    await page.screenshot({ path: join(OUT, 'training.png'), fullPage: true });

    // Cancel (after the confirmation): the job ends and the page shows it.
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click('#job-cancel');
    await page.waitForSelector('#job-status[data-status="cancelled"]', { timeout: 20_000 });
    expect(jobs.get(jobId)?.status).toBe('cancelled');
  });

  test('training: a preparing job shows its badge and what is being made, live, then runs', async () => {
    // The page still holds the token (previous test). The next job finds the environment missing.
    setup.needed = true;
    const created = await request(app).post('/admin/train').set(auth).send({ steps: 10 }).expect(202);
    const id: string = created.body.id;
    await until(() => jobs.get(id)?.preparing?.message === 'Collecting torch', 20_000, 'the job to wait for the environment');
    await page.click('#jobs-refresh');
    await page.click(`#job-list tr[data-id="${id}"]`);
    await page.waitForSelector(`#job-list tr[data-id="${id}"] .badge-preparing`);
    await page.waitForSelector('#job-status[data-status="preparing"] .badge-preparing');
    await page.waitForSelector('#job-preparing[data-stage="environment"]:not([hidden]):has-text("Collecting torch")');
    expect(await page.textContent('#job-preparing')).toBe('Collecting torch');
    expect(await page.textContent('#job-progress')).toBe("making the trainer's environment");

    // A new line of the setup arrives through the events stream's `status` events.
    setup.say('Installing collected packages: torch');
    await page.waitForSelector('#job-preparing:has-text("Installing collected packages: torch")', { timeout: 10_000 });
    await page.screenshot({ path: join(OUT, 'training-preparing.png'), fullPage: true });

    // Made: the trainer starts and the page says so.
    setup.finish();
    await page.waitForSelector('#job-status[data-status="running"] .badge-running', { timeout: 20_000 });
    expect(await page.isVisible('#job-preparing')).toBe(false);
    expect((await request(app).post(`/admin/train/${id}/cancel?wait=true`).set(auth).expect(200)).body.status).toBe('cancelled');
  });

  test('try it: an uploaded image and a question, the answer streamed', async () => {
    await page.goto(`${base}/dashboard#try`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.setInputFiles('#try-image', { name: 'scene.png', mimeType: 'image/png', buffer: vectorPng('224x224') });
    await page.waitForSelector('#try-preview img');
    await page.fill('#try-question', 'How many objects are there?');
    await page.fill('#try-form input[name="max_new_tokens"]', '12');
    const response = page.waitForResponse((res) => res.url() === `${base}/generate`);
    await page.click('#try-submit');
    expect((await response).headers()['content-type']).toMatch(/^text\/event-stream/);
    await page.waitForSelector('#try-status[data-state="done"]', { timeout: 30_000 });
    expect(await page.textContent('#try-status')).toMatch(/^done: (stop|length), \d+ tokens/);
    const text = await page.textContent('#try-output .completion');
    expect(text?.length).toBeGreaterThan(0);
    // Template r1: the completion starts inside the think block.
    expect(await page.$$eval('#try-output .seg-think', (n) => n.length)).toBeGreaterThan(0);
    await page.screenshot({ path: join(OUT, 'try.png'), fullPage: true });
  });
});
