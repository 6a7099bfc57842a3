// Evaluate a model on a benchmark from the command line, through the same engine, scheduler and
// run store as POST /evaluate, with a progress bar and a final table.
//
//   npm run evaluate -- --benchmark spatial-synth --limit 200 [--model tiny-random] [--template r1]
//       [--strategy r1] [--split test] [--subsets a,b] [--level easy] [--max-new-tokens 512] [--dtype q4]
//
// Configuration (models, DATA_DIR, STATE_DIR, threads, batch size) comes from the same environment
// variables as the service (README "Configuration"). The run is stored in STATE_DIR/service.db,
// so the service lists it too.
import { parseArgs } from 'node:util';
import { EvalRuns, RunView } from '../benchmarks/runs';
import { splitLoader } from '../benchmarks/splits';
import { LEVEL_NAMES, LevelName } from '../benchmarks/spatial_synth';
import { RunStore } from '../benchmarks/store';
import { BENCHMARKS, BenchmarkName } from '../benchmarks/types';
import { loadConfig } from '../config';
import { engineFromConfig } from '../server/main';
import { openDatabase } from '../storage/database';
import { progressBar } from './progress';

const USAGE = `usage: npm run evaluate -- --benchmark <${BENCHMARKS.join('|')}> [--limit N] [--split S] [--subsets a,b]
       [--level ${LEVEL_NAMES.join('|')}] [--model NAME] [--template r1|direct|instruct] [--strategy r1|strict]
       [--max-new-tokens N] [--dtype D]
  --level    spatial-synth only: the generator level (default standard; docs/spatial-synth.md "Levels")`;

interface Result {
  n: number;
  accuracy: number;
  format_rate: number;
  by_task: Record<string, { n: number; accuracy: number }>;
  official: { name: string; score: number | null; detail?: string };
  strategy: string;
  template: string;
}

export function formatTable(run: RunView): string {
  const r = run.result as Result;
  const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(2)}%`);
  const level = run.params.level === undefined ? '' : `, level ${run.params.level}`;
  const lines = [
    `${run.benchmark} ${run.split}${level}, model ${run.model}, template ${r.template}, extraction ${r.strategy}`,
    '',
    '| task | n | accuracy |',
    '|---|---|---|',
    ...Object.entries(r.by_task).map(([task, t]) => `| ${task} | ${t.n} | ${pct(t.accuracy)} |`),
    `| **total** | ${r.n} | ${pct(r.accuracy)} |`,
    '',
    `format rate ${pct(r.format_rate)}; official (${r.official.name}) ${pct(r.official.score)}${r.official.detail ? ` (${r.official.detail})` : ''}`,
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
  process.once('SIGINT', interrupt);
  try {
    const run = await runs.create({
      benchmark,
      split: values.split,
      subsets: values.subsets?.split(',').filter(Boolean),
      limit,
      ...(benchmark === 'spatial-synth' ? { level: (values.level ?? 'standard') as LevelName } : {}),
      template: values.template as 'r1' | 'direct' | 'instruct',
      strategy: values.strategy as 'r1' | 'strict',
      maxNewTokens,
      model: values.model ?? config.defaultModel,
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
