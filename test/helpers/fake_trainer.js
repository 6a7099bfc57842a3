// A stand-in for `python -m trainer.grpo --config JOB.json` that keeps the process contract of
// docs/training.md (and trainer/grpo.py's habits), for the job manager's tests: it reads and
// checks job.json, writes config.resolved.json, one metrics.jsonl line and one stderr progress
// line per step, checkpoints/checkpoint-N/trainer_state.json every save_steps, result.json last on
// success; SIGTERM stops it after the current step with a checkpoint and exit code 143; a second
// start continues from the newest checkpoint with the same step count, after dropping the
// metrics lines of the steps it will redo (rewriting metrics.jsonl through a rename).
//
// Behaviour from the environment:
//   FAKE_TRAINER       succeed (default) | crash | hang | ignore-term
//   FAKE_STEP_MS       milliseconds per step (default 20)
//   FAKE_CRASH_AFTER   steps before `crash` fails with a traceback on stderr (default 1)
//   FAKE_HANG_AFTER    steps before `hang` / `ignore-term` stop making progress (default 1)
//   FAKE_EXPORT_FROM   a model folder copied to export_dir on success (default: a README only)
//   FAKE_SPLIT_WRITES  1: write each metrics line in two parts, a pause between (partial lines)
//   FAKE_VARIANT       reward_std of every line (default 0.25): tells one run's lines from another's
//   FAKE_ROLLOUTS      rollouts.jsonl lines written per step (default 0), in trainer/grpo.py's shape
/* global setTimeout, setInterval */
const fs = require('node:fs');
const path = require('node:path');

// The trainer's options, as trainer/config.py lists them (python -m trainer.vectors): a key the
// real trainer would refuse is refused here too.
const OPTIONS = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'vectors', 'training_options.json'), 'utf8')).options;
const KEYS = new Set(OPTIONS.map((option) => option.name));

const env = process.env;
const behaviour = env.FAKE_TRAINER || 'succeed';
const stepMs = Number(env.FAKE_STEP_MS || 20);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fail(message, code = 2) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

const flag = process.argv.indexOf('--config');
if (flag < 0 || !process.argv[flag + 1]) fail('usage: fake_trainer.js --config JOB.json');
const job = JSON.parse(fs.readFileSync(process.argv[flag + 1], 'utf8'));
const unknown = Object.keys(job).filter((k) => !KEYS.has(k));
if (unknown.length) fail(`job.json: unknown keys ${unknown.join(', ')}`);
for (const key of ['base_model', 'dataset', 'output_dir']) if (!job[key]) fail(`job.json: ${key} is required`);

const out = job.output_dir;
const totalSteps = job.steps ?? 3;
const saveSteps = job.save_steps ?? 0;
const exportDir = job.export_dir ?? path.join(out, 'model');
const started = Date.now();
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'config.resolved.json'), JSON.stringify({ ...job, steps: totalSteps, save_steps: saveSteps }));
fs.writeFileSync(path.join(out, 'fake_env.json'), JSON.stringify({ env: Object.keys(env).sort(), values: env, argv: process.argv.slice(2), cwd: process.cwd(), pid: process.pid }));

function newestCheckpoint() {
  const dir = path.join(out, 'checkpoints');
  if (!fs.existsSync(dir)) return 0;
  return Math.max(0, ...fs.readdirSync(dir).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter(Boolean).map((m) => Number(m[1])));
}

function checkpoint(step) {
  const dir = path.join(out, 'checkpoints', `checkpoint-${step}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'trainer_state.json'), JSON.stringify({ step, total_steps: totalSteps }));
}

function metricsLine(step) {
  return {
    step,
    reward: Number((0.1 * step).toFixed(4)),
    reward_std: Number(env.FAKE_VARIANT || 0.25),
    'rewards/accuracy': Number((0.05 * step).toFixed(4)),
    'rewards/format': Number((0.05 * step).toFixed(4)),
    completion_length: 100 + step,
    kl: 0.001 * step,
    loss: 0.5 / step,
    learning_rate: 1e-6 * (1 - step / totalSteps),
    reflection_rate: 0.01 * step,
    seconds: stepMs / 1000,
    grad_norm: 1.5,
    total_steps: totalSteps,
    rollout_tokens_per_second: 1234.5,
    answer_top_share: 0.5,
  };
}

const ROLLOUT_TEXTS = [
  'There are two red cubes on the left. Wait, let me check the back row again.</think> <answer>3</answer>',
  'The sphere is closer to the camera than the cylinder.</think> <answer>sphere</answer>',
  'I think the answer is B',
];

/** FAKE_ROLLOUTS lines for `step` (docs/training.md "rollouts.jsonl"). */
function appendRollouts(step) {
  const count = Number(env.FAKE_ROLLOUTS || 0);
  let text = '';
  for (let i = 0; i < count; i++) {
    const completion = ROLLOUT_TEXTS[(step + i) % ROLLOUT_TEXTS.length];
    const answer = /<answer>([^\n]*?)<\/answer>/.exec(completion);
    const extracted = (answer ? answer[1] : completion).trim();
    text += `${JSON.stringify({
      step,
      item_id: `spatial-synth/train/${String(step * 10 + i).padStart(6, '0')}`,
      prompt: `<|vision_start|><|image_pad|><|vision_end|>How many red cubes are there? (step ${step}, sample ${i})`,
      completion,
      answer: extracted,
      gold: '3',
      rewards: { accuracy: extracted === '3' ? 1 : 0, format: completion.includes('</answer>') ? 1 : 0 },
      reflection: /\b(?:wait|check\w*)\b/i.test(completion),
    })}\n`;
  }
  if (text) fs.appendFileSync(path.join(out, 'rollouts.jsonl'), text);
}

async function appendMetrics(line) {
  const text = `${JSON.stringify(line)}\n`;
  const file = path.join(out, 'metrics.jsonl');
  if (env.FAKE_SPLIT_WRITES === '1') {
    const half = Math.floor(text.length / 2);
    fs.appendFileSync(file, text.slice(0, half));
    await sleep(Math.max(5, stepMs / 2));
    fs.appendFileSync(file, text.slice(half));
  } else {
    fs.appendFileSync(file, text);
  }
}

let current = newestCheckpoint();
let stopRequested = false;
process.on('SIGTERM', () => {
  if (behaviour === 'ignore-term') {
    process.stderr.write('[grpo] SIGTERM ignored\n');
    return;
  }
  stopRequested = true;
});

function stopNow() {
  checkpoint(current);
  process.stderr.write(`[grpo] SIGTERM: checkpoint saved at step ${current}, exiting\n`);
  process.exit(143);
}

async function main() {
  if (current > 0) {
    process.stderr.write(`[grpo] resuming from checkpoints/checkpoint-${current}\n`);
    const file = path.join(out, 'metrics.jsonl');
    if (fs.existsSync(file)) {
      const kept = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() && JSON.parse(l).step <= current);
      fs.writeFileSync(`${file}.tmp`, kept.map((l) => `${l}\n`).join(''));
      fs.renameSync(`${file}.tmp`, file);
    }
  }
  process.stderr.write(`[grpo] ${behaviour}: steps ${current + 1}..${totalSteps} of ${job.job_id}\n`);
  const limit = behaviour === 'hang' || behaviour === 'ignore-term' ? Number(env.FAKE_HANG_AFTER || 1) : totalSteps;
  while (current < Math.min(limit, totalSteps)) {
    await sleep(stepMs);
    current += 1;
    const line = metricsLine(current);
    appendRollouts(current);
    await appendMetrics(line);
    process.stderr.write(`[grpo] step ${current}/${totalSteps} reward ${line.reward.toFixed(3)} completion_length ${line.completion_length}\n`);
    if (saveSteps && current % saveSteps === 0) checkpoint(current);
    if (behaviour === 'crash' && current >= Number(env.FAKE_CRASH_AFTER || 1)) {
      process.stderr.write('Traceback (most recent call last):\n  File "trainer/grpo.py", line 1, in step\n');
      process.stderr.write(`RuntimeError: fake trainer crashed at step ${current}\n`);
      process.exit(1);
    }
    if (stopRequested) stopNow();
  }
  if (current < totalSteps) {
    // hang / ignore-term: no more progress until a signal ends it.
    await new Promise(() => setInterval(() => stopRequested && stopNow(), 10));
  }
  if (env.FAKE_EXPORT_FROM) fs.cpSync(env.FAKE_EXPORT_FROM, exportDir, { recursive: true });
  else {
    fs.mkdirSync(exportDir, { recursive: true });
    fs.writeFileSync(path.join(exportDir, 'README.md'), 'fake export\n');
  }
  const result = { status: 'succeeded', steps: totalSteps, model_dir: exportDir, model_name: path.basename(exportDir), seconds: (Date.now() - started) / 1000 };
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result));
  process.stderr.write('[grpo] done\n');
  process.exit(0);
}

main().catch((error) => fail(String(error && error.stack ? error.stack : error), 1));
