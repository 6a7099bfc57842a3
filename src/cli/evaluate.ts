// Evaluate a model on a benchmark from the command line, through the same engine, scheduler and
// run store as POST /evaluate, with a progress bar and a final table.
//
//   npm run evaluate -- --benchmark spatial-synth --limit 200 [--model tiny-random] [--template r1]
//       [--strategy r1] [--split test] [--subsets a,b] [--level easy] [--max-new-tokens 512] [--dtype q4]
//       [--samples 8 --temperature 1 [--top-p 0.95] [--seed 1]]
//   npm run evaluate -- --benchmark spatial-synth --limit 200 --predictions answers.jsonl [--model label]
//
// --predictions scores responses generated elsewhere (JSON lines, as POST /evaluate/predictions)
// instead of generating them.
//
// Configuration (models, DATA_DIR, STATE_DIR, threads, batch size) comes from the same environment
// variables as the service (README "Configuration"). The run is stored in STATE_DIR/service.db,
// so the service lists it too.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EvalRuns, MAX_SAMPLES, RunSelection, RunView } from '../benchmarks/runs';
import { splitLoader } from '../benchmarks/splits';
import { LEVEL_NAMES, LevelName } from '../benchmarks/spatial_synth';
import { RunStore } from '../benchmarks/store';
import { BENCHMARKS, BenchmarkName } from '../benchmarks/types';
import { MAX_PREDICTION_CHARS, parsePredictionLines } from '../benchmarks/uploads';
import { MAX_SEED, MAX_TEMPERATURE } from '../engine/sampling/params';
import { loadConfig } from '../config';
import { engineFromConfig } from '../engine/from_config';
import { openDatabase } from '../storage/database';
import { progressBar } from './progress';

const USAGE = `usage: npm run evaluate -- --benchmark <${BENCHMARKS.join('|')}> [--limit N] [--split S] [--subsets a,b]
       [--level ${LEVEL_NAMES.join('|')}] [--model NAME] [--template r1|direct|instruct] [--strategy r1|strict]
       [--max-new-tokens N] [--dtype D] [--samples N --temperature T [--top-p P] [--seed S]]
       [--predictions FILE.jsonl]
  --level        spatial-synth only: the generator level (default standard; docs/spatial-synth.md "Levels")
  --samples      responses per item (default 1; above 1 needs --temperature above 0): pass@k, majority vote
  --predictions  score these responses (JSON lines {"id", "prediction", "sample"?}) instead of generating`;

interface Scores {
  n: number;
  accuracy: number;
  format_rate: number;
  pass_at_k: Record<string, number>;
  majority_accuracy: number;
  stats: { completion_tokens: { mean: number; p50: number; p90: number } | null; reflection_rate: number; off_option_rate: number };
}

interface Result extends Scores {
  samples: number;
  by_task: Record<string, Scores>;
  official: { name: string; score: number | null; detail?: string };
  strategy: string;
  template: string;
}

export function formatTable(run: RunView): string {
  const r = run.result as Result;
  const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(2)}%`);
  const level = run.params.level === undefined ? '' : `, level ${run.params.level}`;
  const samples = r.samples ?? 1;
  const ks = samples > 1 ? Object.keys(r.pass_at_k) : [];
  const one = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
  const tokens = (s: Scores) => {
    const t = s.stats.completion_tokens;
    return t === null ? '-' : `${one(t.mean)} / ${one(t.p50)} / ${one(t.p90)}`;
  };
  const row = (name: string, s: Scores) =>
    `| ${name} | ${s.n} | ${pct(s.accuracy)} | ${ks.map((k) => `${pct(s.pass_at_k[k])} | `).join('')}${samples > 1 ? `${pct(s.majority_accuracy)} | ` : ''}${pct(s.format_rate)} | ${tokens(s)} | ${pct(s.stats.reflection_rate)} | ${pct(s.stats.off_option_rate)} |`;
  const header = ['task', 'n', 'accuracy', ...ks.map((k) => `pass@${k}`), ...(samples > 1 ? [`majority@${samples}`] : []), 'format', 'tokens mean / p50 / p90', 'reflection', 'off-option'];
  const origin = 'origin' in run.params ? ', uploaded predictions' : '';
  const lines = [
    `${run.benchmark} ${run.split}${level}, model ${run.model}${origin}, template ${r.template}, extraction ${r.strategy}${samples > 1 ? `, ${samples} samples per item` : ''}`,
    '',
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---|').join('')}`,
    ...Object.entries(r.by_task).map(([task, t]) => row(task, t)),
    row('**total**', r),
    '',
    `official (${r.official.name}) ${pct(r.official.score)}${r.official.detail ? ` (${r.official.detail})` : ''}`,
  ];
  return lines.join('\n');
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        benchmark: { type: 'string' },
        limit: { type: 'string' },
        split: { type: 'string' },
        subsets: { type: 'string' },
        level: { type: 'string' },
        model: { type: 'string' },
        template: { type: 'string', default: 'r1' },
        strategy: { type: 'string', default: 'r1' },
        'max-new-tokens': { type: 'string' },
        samples: { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        seed: { type: 'string' },
        predictions: { type: 'string' },
        dtype: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (error) {
    console.error(`evaluate: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const benchmark = values.benchmark as BenchmarkName;
  const problems: string[] = [];
  if (!BENCHMARKS.includes(benchmark)) problems.push(`--benchmark must be one of ${BENCHMARKS.join(', ')}`);
  if (!['r1', 'direct', 'instruct'].includes(values.template!)) problems.push('--template must be r1, direct or instruct');
  if (!['r1', 'strict'].includes(values.strategy!)) problems.push('--strategy must be r1 or strict');
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) problems.push('--limit must be a positive integer');
  if (values.level !== undefined && !(LEVEL_NAMES as readonly string[]).includes(values.level)) problems.push(`--level must be ${LEVEL_NAMES.join(' or ')}`);
  else if (values.level !== undefined && benchmark !== 'spatial-synth') problems.push('--level applies to --benchmark spatial-synth only');
  const samples = values.samples === undefined ? 1 : Number(values.samples);
  if (!Number.isInteger(samples) || samples < 1 || samples > MAX_SAMPLES) problems.push(`--samples must be an integer from 1 to ${MAX_SAMPLES}`);
  const temperature = values.temperature === undefined ? undefined : Number(values.temperature);
  if (temperature !== undefined && !(temperature >= 0 && temperature <= MAX_TEMPERATURE)) problems.push(`--temperature must be a number from 0 to ${MAX_TEMPERATURE}`);
  else if (samples > 1 && !temperature) problems.push('--samples above 1 needs --temperature above 0 (greedy decoding gives the same response every time)');
  const topP = values['top-p'] === undefined ? undefined : Number(values['top-p']);
  if (topP !== undefined && !(topP > 0 && topP <= 1)) problems.push('--top-p must be a number in (0, 1]');
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED)) problems.push('--seed must be a non-negative integer');
  const generating = values.samples !== undefined || values.temperature !== undefined || values['top-p'] !== undefined || values.seed !== undefined || values['max-new-tokens'] !== undefined;
  if (values.predictions !== undefined && generating) problems.push('--predictions scores given responses: --samples, --temperature, --top-p, --seed and --max-new-tokens do not apply');
  if (problems.length) {
    console.error(`evaluate: ${problems.join('; ')}\n${USAGE}`);
    return 2;
  }

  const config = loadConfig({ ...process.env, ...(values.dtype ? { MODEL_DTYPE: values.dtype } : {}), LOG_LEVEL: 'silent' });
  const maxNewTokens = values['max-new-tokens'] === undefined ? config.defaultMaxNewTokens : Number(values['max-new-tokens']);
  const engine = engineFromConfig(config);
  const db = openDatabase(config.stateDir);
  const runs = new EvalRuns(new RunStore(db), engine, splitLoader(config.dataDir), { concurrency: config.maxBatchSize });
  const interrupt = () => void runs.close().then(() => process.exit(130));
  // The items and scoring, alike for a generated run and for uploaded predictions.
  const selection: Omit<RunSelection, 'model'> = {
    benchmark,
    split: values.split,
    subsets: values.subsets?.split(',').filter(Boolean),
    limit,
    ...(benchmark === 'spatial-synth' ? { level: (values.level ?? 'standard') as LevelName } : {}),
    template: values.template as 'r1' | 'direct' | 'instruct',
    strategy: values.strategy as 'r1' | 'strict',
  };
  process.once('SIGINT', interrupt);
  try {
    if (values.predictions !== undefined) {
      const uploaded = parsePredictionLines(readFileSync(values.predictions, 'utf8'), { maxPredictionChars: MAX_PREDICTION_CHARS, maxSamples: MAX_SAMPLES });
      const run = await runs.importPredictions(
        {
          origin: 'uploaded',
          ...selection,
          model: values.model ?? 'uploaded',
        },
        uploaded,
      );
      console.log(`${formatTable(run)}\n\nrun ${run.id} (GET /evaluate/${run.id})`);
      return 0;
    }
    const run = await runs.create({
      ...selection,
      maxNewTokens,
      model: values.model ?? config.defaultModel,
      samples,
      ...(temperature === undefined ? {} : { temperature }),
      ...(topP === undefined ? {} : { topP }),
      ...(seed === undefined ? {} : { seed }),
    });
    const bar = progressBar(`${benchmark} ${run.split}`, run.progress.total);
    const timer = setInterval(() => {
      const view = runs.get(run.id);
      if (view) bar.update(view.progress.done);
    }, 250);
    const finished = await runs.wait(run.id);
    clearInterval(timer);
    bar.update(finished!.progress.done);
    bar.finish();
    if (finished?.status !== 'succeeded') {
      console.error(`evaluation ${finished?.status}: ${finished?.error ?? ''}`);
      return 1;
    }
    console.log(`\n${formatTable(finished)}\n\nrun ${run.id} (GET /evaluate/${run.id})`);
    return 0;
  } catch (error) {
    console.error(`evaluate: ${(error as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', interrupt);
    await runs.close();
    await engine.dispose();
    db.close();
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}
