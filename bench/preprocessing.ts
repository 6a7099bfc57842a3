// Image preprocessing speed: our Pillow-exact bicubic resize (the one Qwen2-VL's processor uses)
// against sharp's cubic resize (libvips, the peer every Node image pipeline reaches for), and the
// whole pixel-value path (resize + normalise + patchify) per image. Prints one table; ratios are
// ours / sharp in the same run.
//
//   npx tsx bench/preprocessing.ts [--rounds 7]
import sharp from 'sharp';
import { resizeBicubic } from '../src/engine/images/bicubic';
import { RgbImage } from '../src/engine/images/decoding';
import { DEFAULT_IMAGE_PROCESSOR_CONFIG, pixelValuesFromRgb } from '../src/engine/qwen2_vl/image_processing';

const args = process.argv.slice(2);
const roundsAt = args.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 7;

function noise(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let x = 12345;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    data[i] = x >>> 24;
  }
  return { width, height, data };
}

async function medianMs(fn: () => unknown | Promise<unknown>): Promise<number> {
  await fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function main(): Promise<void> {
  const cases: [number, number, number, number][] = [
    [1000, 1000, 448, 448],
    [640, 480, 644, 476],
    [1920, 1080, 896, 504],
    [224, 224, 448, 448],
  ];
  console.log(`| input | output | ours ms | sharp cubic ms | ours / sharp | resize + pixel values ms |`);
  console.log(`|---|---|---|---|---|---|`);
  for (const [w, h, ow, oh] of cases) {
    const image = noise(w, h);
    const raw = Buffer.from(image.data);
    const ours = await medianMs(() => resizeBicubic(image, ow, oh));
    const peer = await medianMs(() =>
      sharp(raw, { raw: { width: w, height: h, channels: 3 } })
        .resize(ow, oh, { kernel: 'cubic', fit: 'fill' })
        .raw()
        .toBuffer(),
    );
    const full = await medianMs(() => pixelValuesFromRgb(resizeBicubic(image, ow, oh), DEFAULT_IMAGE_PROCESSOR_CONFIG));
    console.log(`| ${w}x${h} | ${ow}x${oh} | ${ours.toFixed(1)} | ${peer.toFixed(1)} | ${(ours / peer).toFixed(2)} | ${full.toFixed(1)} |`);
  }
  console.log(`\nmedian of ${ROUNDS} rounds after one warm-up; sharp runs on libvips' own threads`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
