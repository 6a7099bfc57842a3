// `npm run synth -- --out data/spatial-synth --train 20000 --val 500 --test 1000 --seed 1 [--size 448] [--level easy]`
// Writes the spatial-synth data set (docs/spatial-synth.md) with a progress bar on stderr.
import { isServiceError } from '../errors';
import { LEVEL_NAMES, LEVELS, LevelName, MAX_ITEMS_PER_SPLIT, SPLITS, writeDataset } from '../benchmarks/spatial_synth';
import { progressBar, ProgressBar } from './progress';

export const USAGE = `Usage: npm run synth -- --out DIR [--train N] [--val N] [--test N] [--seed N] [--level standard|easy] [--size N|WxH] [--concurrency N] [--describe]

Writes the spatial-synth data set: DIR/{train,val,test}.jsonl, DIR/images/<split>/<index>.png, DIR/dataset.json.

  --out DIR          output folder (required; created if missing, existing files overwritten)
  --train N          training items (default 20000; 0 skips the split)
  --val N            validation items (default 500)
  --test N           test items (default 1000)
  --seed N           generator seed, a non-negative integer (default 1)
  --level L          scene distribution: standard (3-8 objects, the default) or easy (2-4 larger,
                     nearer objects, 168x168 images by default); docs/spatial-synth.md "Levels"
  --size N|WxH       image size in pixels, 64 to 4096 (default 448, i.e. 448x448; 168 with --level easy)
  --concurrency N    images rendered at once (default: 2 per CPU, at least 4)
  --describe         add a scene description to each record (meta.description: facts and text)
  -h, --help         show this text`;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface SynthArgs {
  out: string;
  train: number;
  val: number;
  test: number;
  seed: number;
  /** The --level given; undefined (the standard level) when none was. */
  level?: LevelName;
  width: number;
  height: number;
  concurrency?: number;
  describe: boolean;
  help: boolean;
}

const DEFAULTS = { train: 20000, val: 500, test: 1000, seed: 1, size: 448 };
const FLAGS = ['out', 'train', 'val', 'test', 'seed', 'level', 'size', 'concurrency'] as const;
type Flag = (typeof FLAGS)[number];

function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** Parses the command line (without node and script); throws UsageError with a message naming the flag. */
export function parseSynthArgs(argv: string[]): SynthArgs {
  const given: Partial<Record<Flag, string>> = {};
  let help = false;
  let describe = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (arg === '--describe') {
      describe = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(arg)} (options start with --)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!(FLAGS as readonly string[]).includes(name)) throw new UsageError(`unknown option --${name}`);
    const flag = name as Flag;
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${flag} needs a value`);
    if (given[flag] !== undefined) throw new UsageError(`--${flag} is given twice`);
    given[flag] = value;
  }
  if (help) return { out: given.out ?? '', ...DEFAULTS, width: DEFAULTS.size, height: DEFAULTS.size, describe, help };
  if (given.out === undefined) throw new UsageError('--out is required (the folder to write the data set to)');
  const counts = Object.fromEntries(
    SPLITS.map((split) => [split, given[split] === undefined ? DEFAULTS[split] : wholeNumber(split, given[split]!, 0, MAX_ITEMS_PER_SPLIT)]),
  ) as Record<(typeof SPLITS)[number], number>;
  if (counts.train + counts.val + counts.test === 0) throw new UsageError('nothing to generate: --train, --val and --test are all 0');
  if (given.level !== undefined && !(LEVEL_NAMES as readonly string[]).includes(given.level)) {
    throw new UsageError(`--level must be one of ${LEVEL_NAMES.join(', ')}, got ${JSON.stringify(given.level)}`);
  }
  const level = given.level as LevelName | undefined;
  // Each level has its own default image size; --size overrides it.
  let width = level === undefined ? DEFAULTS.size : LEVELS[level].size;
  let height = width;
  if (given.size !== undefined) {
    const m = /^(\d+)(?:x(\d+))?$/.exec(given.size);
    if (!m) throw new UsageError(`--size must be N or WxH (pixels), got ${JSON.stringify(given.size)}`);
    width = wholeNumber('size', m[1], 64, 4096);
    height = m[2] === undefined ? width : wholeNumber('size', m[2], 64, 4096);
  }
  return {
    out: given.out,
    ...counts,
    seed: given.seed === undefined ? DEFAULTS.seed : wholeNumber('seed', given.seed, 0, Number.MAX_SAFE_INTEGER),
    ...(level === undefined ? {} : { level }),
    width,
    height,
    concurrency: given.concurrency === undefined ? undefined : wholeNumber('concurrency', given.concurrency, 1, 256),
    describe,
    help,
  };
}

interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Runs the command; returns the exit status (0 done, 1 failed, 2 bad arguments). */
export async function main(argv: string[], io: { stdout: Output; stderr: Output } = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let args: SynthArgs;
  try {
    args = parseSynthArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`synth: ${error.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const start = Date.now();
  let bar: ProgressBar | undefined;
  try {
    const info = await writeDataset(args.out, {
      train: args.train,
      val: args.val,
      test: args.test,
      seed: args.seed,
      level: args.level,
      width: args.width,
      height: args.height,
      concurrency: args.concurrency,
      describe: args.describe,
      onProgress: (p) => {
        bar ??= progressBar('synth', p.total, io.stderr as NodeJS.WriteStream);
        bar.update(p.done, p.split);
      },
    });
    bar?.finish();
    const seconds = (Date.now() - start) / 1000;
    const total = Object.values(info.counts).reduce((a, b) => a + b, 0);
    const splits = Object.entries(info.counts).map(([s, n]) => `${s} ${n}`).join(', ');
    io.stdout.write(`wrote ${total} items (${splits}) to ${args.out} in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(0)} items/s)\n`);
    return 0;
  } catch (error) {
    const invalidInput = isServiceError(error) && error.status === 400;
    io.stderr.write(`\nsynth: ${error instanceof Error ? error.message : String(error)}\n`);
    return invalidInput ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
