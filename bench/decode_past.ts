// What one batched decoder run costs as the past grows, on the tightest loop (bench/ceiling.ts).
// Prints a markdown table (docs/performance.md, "Padding to the longest row").
//
//   npx tsx bench/decode_past.ts [--model DIR[:dtype]]... [--extra 0,32,64,128] [--batches 1,4,16] [--threads 2]
//
// Rows of a running batch are left-padded to the longest past (src/engine/runner/kv_batch.ts), so
// with clients that join at different times a run attends over the oldest row's past, not the
// mean. The ceiling's c=N columns in bench/generation.ts use the mean (prompt + half the tokens);
// this table shows how much a longer past costs, to read our c=16 rate against the right bound.
import { batchedRunMs, openCeiling } from './ceiling';
import { flag, flags, noisePng, QUESTION } from './common';
import { Dtype } from '../src/engine/model_folder';

async function main() {
  const models = flags('model').length ? flags('model') : ['models/nano-r1zero', 'models/tiny-random'];
  const extras = flag('extra', '0,32,64,128').split(',').map(Number);
  const batches = flag('batches', '1,4,16').split(',').map(Number);
  const threads = Number(flag('threads', '2'));
  const png = await noisePng(224, 7);

  console.log(`| model | past | ${batches.map((b) => `ms per run, ${b} row${b > 1 ? 's' : ''}`).join(' | ')} | c=${batches.at(-1)} / c=${batches[0]} |`);
  console.log(`|---|---|${batches.map(() => '---|').join('')}---|`);
  for (const spec of models) {
    const [dir, dtype = 'fp32'] = spec.split(':');
    const loop = await openCeiling(dir, dtype as Dtype, threads, QUESTION);
    const ms = await batchedRunMs(loop, png, batches, extras).finally(() => loop.dispose());
    for (const extra of extras) {
      const row = batches.map((b) => ms[extra][b]);
      // Rows decoded per ms at the largest batch over the smallest: what batching buys at this past.
      const ratio = (batches.at(-1)! / row.at(-1)!) / (batches[0] / row[0]);
      console.log(`| ${dir.split('/').pop()}:${dtype} | prompt + ${extra} | ${row.map((m) => m.toFixed(2)).join(' | ')} | ${ratio.toFixed(2)} |`);
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
